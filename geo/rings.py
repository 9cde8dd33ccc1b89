"""Rank sites (warehouses) by H3 ring around a customer, exact distance breaking ties in a ring.

Resolution 4 cells have ~26 km edges, so ring k lies roughly 45*k km from the customer's cell;
RING_MAX_K = 10 reaches ~450 km. Sites beyond the last ring are still reachable: `beyond()`
ranks them by exact distance, so an order is never refused while stock exists anywhere.

A ring is the grid distance: the fewest steps from cell to neighbouring cell. Near the 12
pentagons h3's `grid_distance` has no answer for some pairs (its path would cross the pentagon's
missing wedge) although the cells are close; those sites get their ring by walking the rings,
the same ring the walk gives everyone, so a site 30 km away across a pentagon is never skipped.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from functools import lru_cache
from math import acos, asin, ceil, cos, radians, sin, sqrt
from typing import Final, NamedTuple

import h3

from geo.distance import EARTH_RADIUS_KM, Point

RESOLUTION: Final = 4
RING_MAX_K: Final = 10
RING_CACHE_CELLS: Final = 65_536
DISK_CELLS: Final = 3 * RING_MAX_K * (RING_MAX_K + 1) + 1  # cells within RING_MAX_K rings
# The widest step between the centres of two neighbouring cells at RESOLUTION (49.7 km, measured
# over all 288,122 resolution 4 cells; tests/unit/test_rings.py checks a sample): a cell whose
# centre is farther than RING_MAX_K such steps cannot be within RING_MAX_K rings, so no grid
# distance is asked for it.
MAX_NEIGHBOUR_STEP_KM: Final = 50.0
RING_REACH_KM: Final = RING_MAX_K * MAX_NEIGHBOUR_STEP_KM
# The same bound as the dot product of two unit vectors: three multiplications, no trigonometry.
COS_RING_REACH: Final = cos(RING_REACH_KM / EARTH_RADIUS_KM)


# (site_id, exact distance in km): plain tuples, since every order builds a list of them.
RankedSite = tuple[str, float]
# (site_id, least km, most km): a site's distance from any point of a cell, bounded.
BoundedSite = tuple[str, float, float]
# Added to a cell's radius: the farthest point of a cell from its centre is one of its vertices,
# this covers the rounding of the distances measured to them.
CELL_RADIUS_MARGIN_KM: Final = 0.5


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


def _site_at(site_id: str, lat_lon: tuple[float, float]) -> _Site:
    lat, lon = radians(lat_lon[0]), radians(lat_lon[1])
    return _Site(site_id, lat, lon, cos(lat))


class _Cell(NamedTuple):
    """A cell holding sites, with its centre as a unit vector (for the reach test)."""

    x: float
    y: float
    z: float
    cell: str
    sites: tuple[_Site, ...]


def _unit_vector(cell: str) -> tuple[float, float, float]:
    lat, lon = h3.cell_to_latlng(cell)
    lat_rad, lon_rad = radians(lat), radians(lon)
    return cos(lat_rad) * cos(lon_rad), cos(lat_rad) * sin(lon_rad), sin(lat_rad)


class RingIndex:
    """Immutable index of sites by H3 cell; build a new one when the sites change."""

    def __init__(self, sites: Mapping[str, Point]) -> None:
        self._sites = {site_id: _site_at(site_id, (p.lat, p.lon)) for site_id, p in sites.items()}
        self._by_cell: dict[str, list[_Site]] = {}
        for site_id, point in sorted(sites.items()):
            self._by_cell.setdefault(cell_of(point), []).append(self._sites[site_id])
        self._cells = [
            _Cell(*_unit_vector(cell), cell, tuple(sites)) for cell, sites in self._by_cell.items()
        ]
        # Walking rings is costly in h3; customers cluster in few cells, so cache.
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
        cells, one grid_distance per site cell is far cheaper than walking every ring, which
        matters on a worker's first orders from each customer cell."""
        ox, oy, oz = _unit_vector(origin)
        by_ring: dict[int, list[_Site]] = {}
        no_grid_distance: set[str] = set()
        lowest_ring = RING_MAX_K
        for x, y, z, cell, sites in self._cells:
            # Out of reach: no grid distance to ask for (h3 is slow even to refuse a far pair).
            cos_angle = ox * x + oy * y + oz * z
            if cos_angle < COS_RING_REACH:
                continue
            try:
                k = h3.grid_distance(origin, cell)
            except h3.H3BaseException:  # a path across a pentagon's missing wedge
                no_grid_distance.add(cell)
                # No step is longer than MAX_NEIGHBOUR_STEP_KM: the walk can start this far out.
                km = acos(min(1.0, cos_angle)) * EARTH_RADIUS_KM
                lowest_ring = min(lowest_ring, ceil(km / MAX_NEIGHBOUR_STEP_KM))
                continue
            if k <= RING_MAX_K:
                by_ring.setdefault(k, []).extend(sites)
        # Only near a pentagon: the walk is slow there, but once per customer cell like the rest
        # of this method (cached).
        for cell, k in _rings_by_walking_to(origin, no_grid_distance, lowest_ring).items():
            by_ring.setdefault(k, []).extend(self._by_cell[cell])
        return tuple(tuple(by_ring[k]) for k in sorted(by_ring))

    def fixed_ranking(self, cell: str) -> tuple[BoundedSite, ...] | None:
        """What ranked() gives every point of `cell`, when that is one answer: the sites in
        their order with the bounds of their distance from any point of the cell; None when two
        sites of one ring could come in either order, depending on where in the cell. Not cached
        here: its caller keeps what it makes of it per cell (engine/warehouses.py)."""
        lat, lon = (radians(degrees) for degrees in h3.cell_to_latlng(cell))
        cos_lat = cos(lat)
        radius_km = CELL_RADIUS_MARGIN_KM + max(
            _km(lat, lon, cos_lat, _site_at("", vertex)) for vertex in h3.cell_to_boundary(cell)
        )
        fixed: list[BoundedSite] = []
        for sites in self._rings_of_cell(cell):
            ring = sorted((_km(lat, lon, cos_lat, s), s.site_id) for s in sites)
            for (km, _), (next_km, _) in itertools.pairwise(ring):
                if next_km - km <= 2 * radius_km:  # their distances' ranges overlap
                    return None
            fixed.extend(
                (site_id, max(0.0, km - radius_km), km + radius_km) for km, site_id in ring
            )
        return tuple(fixed)

    def ranked(self, customer: Point, cell: str | None = None) -> list[RankedSite]:
        """Sites within RING_MAX_K rings, nearest ring first, exact distance inside a ring.
        `cell`: the customer's, when the caller has it already."""
        lat, lon = radians(customer.lat), radians(customer.lon)
        cos_lat = cos(lat)
        ranked: list[RankedSite] = []
        for sites in self._rings_of_cell(cell or cell_of(customer)):
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


def _rings_by_walking_to(origin: str, cells: set[str], from_ring: int) -> dict[str, int]:
    """The ring of each of `cells` within RING_MAX_K of `origin`, found by walking the rings
    (defined across pentagons too) from `from_ring`, which none of them is nearer than; the walk
    stops once every cell was met."""
    found: dict[str, int] = {}
    if not cells:
        return found
    for k in range(from_ring, RING_MAX_K + 1):
        for cell in _ring_cells(origin, k):
            if cell in cells:
                found[cell] = k
        if len(found) == len(cells):
            break
    return found


def _km(lat: float, lon: float, cos_lat: float, site: _Site) -> float:
    """Haversine with the cosines precomputed: this runs for every candidate of every order."""
    h = (
        sin((site.lat_rad - lat) / 2) ** 2
        + cos_lat * site.cos_lat * sin((site.lon_rad - lon) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * asin(min(1.0, sqrt(h)))
