"""Points on the globe and the great-circle distance between two of them."""

from __future__ import annotations

from math import asin, cos, radians, sin, sqrt
from typing import Final, NamedTuple

EARTH_RADIUS_KM: Final = 6371.0088  # mean radius (IUGG), the one h3 uses too


class Point(NamedTuple):
    """A location in degrees: a customer's, a warehouse's."""

    lat: float
    lon: float


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance in km; exact enough (<0.5%) for ranking and delivery estimates."""
    phi1, phi2 = radians(lat1), radians(lat2)
    dphi = phi2 - phi1
    dlmb = radians(lon2 - lon1)
    h = sin(dphi / 2) ** 2 + cos(phi1) * cos(phi2) * sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * asin(min(1.0, sqrt(h)))
