"""Rank sites (warehouses) by H3 ring around a customer, exact distance breaking ties in a ring.

Resolution 4 cells have ~26 km edges, so ring k lies roughly 45*k km from the customer's cell;
RING_MAX_K = 10 reaches ~450 km. Sites beyond the last ring are still reachable: `beyond()`
ranks them by exact distance, so an order is never refused while stock exists anywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Final, NamedTuple

import h3

from geo.distance import great_circle_km

RESOLUTION: Final = 4
RING_MAX_K: Final = 10
RING_CACHE_CELLS: Final = 65_536


class Point(NamedTuple):
    lat: float
    lon: float


class RankedSite(NamedTuple):
    site_id: str
    ring: int  # H3 grid distance from the customer's cell; -1 when beyond RING_MAX_K
    distance_km: float


def cell_of(point: Point) -> str:
    return h3.latlng_to_cell(point.lat, point.lon, RESOLUTION)


def _ring_cells(origin: str, k: int) -> Iterable[str]:
    try:
        return h3.grid_ring(origin, k)
    except h3.H3BaseException:
        # grid_ring is undefined across a pentagon; the disk difference is always defined.
        return set(h3.grid_disk(origin, k)) - set(h3.grid_disk(origin, k - 1)) if k else [origin]


class RingIndex:
    """Immutable index of sites by H3 cell; build a new one when the sites change."""

    def __init__(self, sites: Mapping[str, Point]) -> None:
        self._sites = dict(sites)
        self._by_cell: dict[str, list[str]] = {}
        for site_id, point in sorted(self._sites.items()):
            self._by_cell.setdefault(cell_of(point), []).append(site_id)
        # Walking rings costs ~20 us per ring in h3; customers cluster in few cells, so cache.
        self._rings_of_cell = lru_cache(maxsize=RING_CACHE_CELLS)(self._walk_rings)

    def __contains__(self, site_id: object) -> bool:
        return site_id in self._sites

    def __len__(self) -> int:
        return len(self._sites)

    def _walk_rings(self, origin: str) -> tuple[tuple[str, ...], ...]:
        rings: list[tuple[str, ...]] = []
        for k in range(RING_MAX_K + 1):
            found = [s for cell in _ring_cells(origin, k) for s in self._by_cell.get(cell, ())]
            rings.append(tuple(found))
        return tuple(rings)

    def ranked(self, customer: Point) -> list[RankedSite]:
        """Sites within RING_MAX_K rings, nearest ring first, exact distance inside a ring."""
        ranked: list[RankedSite] = []
        for k, site_ids in enumerate(self._rings_of_cell(cell_of(customer))):
            ring = [RankedSite(s, k, self._distance(customer, s)) for s in site_ids]
            ring.sort(key=lambda r: (r.distance_km, r.site_id))
            ranked.extend(ring)
        return ranked

    def beyond(self, customer: Point, site_ids: Iterable[str]) -> list[RankedSite]:
        """The given known sites ranked by exact distance alone (for sites past the last ring)."""
        far = [RankedSite(s, -1, self._distance(customer, s)) for s in site_ids if s in self]
        far.sort(key=lambda r: (r.distance_km, r.site_id))
        return far

    def distance_km(self, customer: Point, site_id: str) -> float:
        return self._distance(customer, site_id)

    def _distance(self, customer: Point, site_id: str) -> float:
        site = self._sites[site_id]
        return great_circle_km(customer.lat, customer.lon, site.lat, site.lon)
