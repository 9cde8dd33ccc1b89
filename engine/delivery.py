"""The delivery-date rule: one handling day, then one transit day per started 500 km (at least 1).

A customer 30 km from the warehouse gets it in 2 days, 1,200 km away in 4. Dates are UTC calendar
days counted from the moment the order was confirmed.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from math import ceil
from typing import Final

HANDLING_DAYS: Final = 1
KM_PER_TRANSIT_DAY: Final = 500.0


def delivery_days(distance_km: float) -> int:
    return HANDLING_DAYS + max(1, ceil(distance_km / KM_PER_TRANSIT_DAY))


def estimated_delivery(created_ms: int, days: int) -> date:
    return datetime.fromtimestamp(created_ms / 1000, UTC).date() + timedelta(days=days)
