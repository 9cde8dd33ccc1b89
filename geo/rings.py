"""Rank sites (warehouses) by H3 ring around a customer, exact distance breaking ties in a ring.

Resolution 4 cells have ~26 km edges, so ring k lies roughly 45*k km from the customer's cell;
RING_MAX_K = 10 reaches ~450 km. Sites beyond the last ring are still reachable: `beyond()`
ranks them by exact distance, so an order is never refused while stock exists anywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from math import asin, cos, radians, sin, sqrt
from typing import Final, NamedTuple

import h3

from geo.distance import EARTH_RADIUS_KM

RESOLUTION: Final = 4
RING_MAX_K: Final = 10
RING_CACHE_CELLS: Final = 65_536
DISK_CELLS: Final = 3 * RING_MAX_K * (RING_MAX_K + 1) + 1  # cells within RING_MAX_K rings


class Point(NamedTuple):
    lat: float
    lon: float


# (site_id, exact distance in km): plain tuples, since every order builds a list of them.
RankedSite = tuple[str, float]


def cell_of(point: Point) -> str:
    cell: str = h3.latlng_to_cell(point.lat, point.lon, RESOLUTION)
    return cell


def _ring_cells(origin: str, k: int) -> Iterable[str]:
    try:
        ring: list[str] = h3.grid_ring(origin, k)
        return ring
    except h3.H3BaseException:
        # grid_ring is undefined across a pentagon; the disk difference is always defined.
        return set(h3.grid_disk(origin, k)) - set(h3.grid_disk(origin, k - 1)) if k else [origin]


class _Site(NamedTuple):
    site_id: str
    lat_rad: float
    lon_rad: float
    cos_lat: float


class RingIndex:
    """Immutable index of sites by H3 cell; build a new one when the sites change."""

    def __init__(self, sites: Mapping[str, Point]) -> None:
        self._sites = {
            site_id: _Site(site_id, radians(p.lat), radians(p.lon), cos(radians(p.lat)))
            for site_id, p in sites.items()
        }
        self._by_cell: dict[str, list[_Site]] = {}
        for site_id, point in sorted(sites.items()):
            self._by_cell.setdefault(cell_of(point), []).append(self._sites[site_id])
        # Walking rings costs ~20 us per ring in h3; customers cluster in few cells, so cache.
        self._rings_of_cell = lru_cache(maxsize=RING_CACHE_CELLS)(self._rings)

    def __contains__(self, site_id: object) -> bool:
        return site_id in self._sites

    def __len__(self) -> int:
        return len(self._sites)

    def _rings(self, origin: str) -> tuple[tuple[_Site, ...], ...]:
        """The sites of each non-empty ring around `origin`, nearest ring first."""
        if len(self._by_cell) < DISK_CELLS:
            return self._rings_by_grid_distance(origin)
        return self._rings_by_walking(origin)

    def _rings_by_walking(self, origin: str) -> tuple[tuple[_Site, ...], ...]:
        rings = []
        for k in range(RING_MAX_K + 1):
            found = tuple(s for cell in _ring_cells(origin, k) for s in self._by_cell.get(cell, ()))
            if found:
                rings.append(found)
        return tuple(rings)

    def _rings_by_grid_distance(self, origin: str) -> tuple[tuple[_Site, ...], ...]:
        """The same rings, found from the sites' side: with fewer site cells than the disk has
        cells, one grid_distance per site cell (~0.4 us) beats walking every ring (~240 us), which
        matters on a worker's first orders from each customer cell."""
        by_ring: dict[int, list[_Site]] = {}
        for cell, sites in self._by_cell.items():
            try:
                k = h3.grid_distance(origin, cell)
            except h3.H3BaseException:  # no grid path (across a pentagon, or too far): beyond
                continue
            if k <= RING_MAX_K:
                by_ring.setdefault(k, []).extend(sites)
        return tuple(tuple(by_ring[k]) for k in sorted(by_ring))

    def ranked(self, customer: Point) -> list[RankedSite]:
        """Sites within RING_MAX_K rings, nearest ring first, exact distance inside a ring."""
        lat, lon = radians(customer.lat), radians(customer.lon)
        cos_lat = cos(lat)
        ranked: list[RankedSite] = []
        for sites in self._rings_of_cell(cell_of(customer)):
            if len(sites) == 1:  # the common case: no tie to break
                ranked.append((sites[0].site_id, _km(lat, lon, cos_lat, sites[0])))
            else:
                ring = sorted((_km(lat, lon, cos_lat, s), s.site_id) for s in sites)
                ranked.extend((site_id, km) for km, site_id in ring)
        return ranked

    def beyond(self, customer: Point, site_ids: Iterable[str]) -> list[RankedSite]:
        """The given known sites ranked by exact distance alone (for sites past the last ring)."""
        lat, lon = radians(customer.lat), radians(customer.lon)
        cos_lat = cos(lat)
        far = sorted(
            (_km(lat, lon, cos_lat, self._sites[s]), s) for s in site_ids if s in self._sites
        )
        return [(site_id, km) for km, site_id in far]

    def distance_km(self, customer: Point, site_id: str) -> float:
        lat = radians(customer.lat)
        return _km(lat, radians(customer.lon), cos(lat), self._sites[site_id])


def _km(lat: float, lon: float, cos_lat: float, site: _Site) -> float:
    """Haversine with the cosines precomputed: this runs for every candidate of every order."""
    h = (
        sin((site.lat_rad - lat) / 2) ** 2
        + cos_lat * site.cos_lat * sin((site.lon_rad - lon) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * asin(min(1.0, sqrt(h)))
