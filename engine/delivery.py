"""The delivery-date rule: one handling day, then one transit day per started 500 km (at least 1).

A customer 30 km from the warehouse gets it in 2 days, 1,200 km away in 4. Dates are UTC calendar
days counted from the moment the order was confirmed.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from math import ceil
from typing import Final

HANDLING_DAYS: Final = 1
KM_PER_TRANSIT_DAY: Final = 500.0
_MS_PER_DAY: Final = 86_400_000
_EPOCH_ORDINAL: Final = datetime(1970, 1, 1, tzinfo=UTC).toordinal()


def delivery_days(distance_km: float) -> int:
    return HANDLING_DAYS + max(1, ceil(distance_km / KM_PER_TRANSIT_DAY))


def estimated_delivery(created_ms: int, days: int) -> date:
    # Day numbers, not datetimes: this runs for every order placed.
    return date.fromordinal(_EPOCH_ORDINAL + created_ms // _MS_PER_DAY + days)
