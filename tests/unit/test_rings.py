"""Ring ranking: nearest H3 ring first, exact distance inside a ring, checked by brute force."""

from __future__ import annotations

import random
from math import cos, radians

import h3
import pytest

from geo.distance import Point, great_circle_km
from geo.rings import (
    DISK_CELLS,
    MAX_NEIGHBOUR_STEP_KM,
    RESOLUTION,
    RING_MAX_K,
    RingIndex,
    cell_of,
)

PARIS = Point(48.8566, 2.3522)


@pytest.mark.parametrize(
    ("lat1", "lon1", "lat2", "lon2", "km"),
    [
        (48.8566, 2.3522, 51.5074, -0.1278, 343.5),  # Paris - London
        (40.7128, -74.0060, 34.0522, -118.2437, 3935.7),  # New York - Los Angeles
        (0.0, 0.0, 0.0, 180.0, 20015.1),  # half the equator
        (10.0, 10.0, 10.0, 10.0, 0.0),
    ],
)
def test_great_circle_distance(
    lat1: float, lon1: float, lat2: float, lon2: float, km: float
) -> None:
    assert great_circle_km(lat1, lon1, lat2, lon2) == pytest.approx(km, rel=0.003, abs=0.01)


@pytest.mark.parametrize(
    ("sites", "expected"),
    [
        # same cell: the exact distance decides
        ({"far": Point(48.90, 2.40), "near": Point(48.857, 2.353)}, ["near", "far"]),
        # a nearer ring wins over a farther one
        ({"lyon": Point(45.76, 4.83), "paris": Point(48.85, 2.35)}, ["paris", "lyon"]),
        # past RING_MAX_K: not ranked here (see beyond())
        ({"madrid": Point(40.41, -3.70), "paris": Point(48.85, 2.35)}, ["paris"]),
        # equal distance: the site id breaks the tie, so the answer is stable
        ({"b": PARIS, "a": PARIS}, ["a", "b"]),
    ],
)
def test_ranked_order(sites: dict[str, Point], expected: list[str]) -> None:
    assert [site_id for site_id, _ in RingIndex(sites).ranked(PARIS)] == expected


def test_beyond_ranks_by_exact_distance_and_ignores_unknown_sites() -> None:
    index = RingIndex({"madrid": Point(40.41, -3.70), "rome": Point(41.9, 12.5)})
    ranked = index.beyond(PARIS, ["rome", "madrid", "atlantis"])
    assert [site_id for site_id, _ in ranked] == ["madrid", "rome"]
    assert ranked[0][1] == pytest.approx(1053, rel=0.01)


def _brute_force(sites: dict[str, Point], customer: Point) -> list[str]:
    origin = h3.latlng_to_cell(customer.lat, customer.lon, RESOLUTION)
    within: list[tuple[int, float, str]] = []
    for site_id, p in sites.items():
        cell = h3.latlng_to_cell(p.lat, p.lon, RESOLUTION)
        try:
            ring = h3.grid_distance(origin, cell)
        except h3.H3BaseException:
            continue  # too far apart for a grid distance: certainly beyond the rings
        if ring <= RING_MAX_K:
            within.append((ring, great_circle_km(*customer, *p), site_id))
    return [site_id for _, _, site_id in sorted(within)]


@pytest.mark.parametrize("seed", range(5))
def test_ring_walk_matches_brute_force_on_random_sites(seed: int) -> None:
    rng = random.Random(seed)
    # A 1,200 km box around central Europe: many sites share rings, some lie past the last ring.
    sites = {f"w{i}": Point(rng.uniform(43, 53), rng.uniform(-2, 12)) for i in range(60)}
    index = RingIndex(sites)
    for _ in range(200):
        customer = Point(rng.uniform(43, 53), rng.uniform(-2, 12))
        assert [site_id for site_id, _ in index.ranked(customer)] == _brute_force(sites, customer)


def test_both_ways_of_finding_rings_agree() -> None:
    """Few site cells: one grid_distance per site cell; many (>= DISK_CELLS): walking every ring.
    Both must find the same rings."""
    rng = random.Random(11)
    sites = {f"w{i}": Point(rng.uniform(43, 53), rng.uniform(-2, 12)) for i in range(DISK_CELLS)}
    index = RingIndex(sites)
    for _ in range(50):
        origin = h3.latlng_to_cell(rng.uniform(43, 53), rng.uniform(-2, 12), RESOLUTION)
        walked = [sorted(s.site_id for s in ring) for ring in index._rings_by_walking(origin)]
        measured = [
            sorted(s.site_id for s in ring) for ring in index._rings_by_grid_distance(origin)
        ]
        assert walked == measured


# Near a pentagon: h3's grid_distance raises for some close pairs (the path would cross the
# pentagon's missing wedge); the ring is still defined as the fewest steps between neighbours.


def _rings_by_disks(origin: str) -> dict[str, int]:
    """The grid distance of every cell within RING_MAX_K by brute force: the first disk around
    `origin` that holds it (h3's disks are defined across pentagons)."""
    rings: dict[str, int] = {}
    for k in range(RING_MAX_K + 1):
        for cell in h3.grid_disk(origin, k):
            rings.setdefault(cell, k)
    return rings


def _brute_force_everywhere(sites: dict[str, Point], customer: Point) -> list[str]:
    rings = _rings_by_disks(h3.latlng_to_cell(customer.lat, customer.lon, RESOLUTION))
    within: list[tuple[int, float, str]] = []
    for site_id, p in sites.items():
        ring = rings.get(h3.latlng_to_cell(p.lat, p.lon, RESOLUTION))
        if ring is not None:
            within.append((ring, great_circle_km(*customer, *p), site_id))
    return [site_id for _, _, site_id in sorted(within)]


def _no_grid_distance(a: str, b: str) -> bool:
    try:
        h3.grid_distance(a, b)
    except h3.H3BaseException:
        return True
    return False


def _towards(cell: str, other: str, share: float) -> Point:
    """A point of `cell`: its centre moved `share` of the way to the nearest vertex of `cell`
    to `other`'s centre (inside the cell: hexagons and pentagons are convex)."""
    lat, lon = h3.cell_to_latlng(cell)
    target = h3.cell_to_latlng(other)
    vlat, vlon = min(h3.cell_to_boundary(cell), key=lambda v: great_circle_km(*v, *target))
    return Point(lat + share * (vlat - lat), lon + share * (vlon - lon))


def _across_the_pentagon(pentagon: str) -> tuple[Point, dict[str, Point]]:
    """A customer next to `pentagon` and warehouses around it: the nearest by distance ("across")
    lies where h3 has no grid distance to the customer's cell, the others where it has one."""
    pairs = [
        (great_circle_km(*h3.cell_to_latlng(o), *h3.cell_to_latlng(t)), o, t)
        for o in h3.grid_disk(pentagon, 1)
        for t in h3.grid_disk(pentagon, 3)
        if _no_grid_distance(o, t)
    ]
    _, origin, across = min(pairs)
    customer = _towards(origin, across, 0.9)
    sites = {"across": _towards(across, origin, 0.9)}
    near_km = great_circle_km(*customer, *sites["across"])
    across_ring = _rings_by_disks(origin)[across]
    # Decoys h3 has a grid distance for, each farther than "across": in its ring and beyond,
    # and one ~170 km out (the warehouse the order went to).
    decoys = [
        c
        for c in h3.grid_disk(origin, 6)
        if not _no_grid_distance(origin, c)
        and h3.grid_distance(origin, c) >= across_ring
        and great_circle_km(*customer, *h3.cell_to_latlng(c)) > near_km + 5
    ]
    for i, cell in enumerate(sorted(decoys)[::5]):
        sites[f"decoy-{i}"] = Point(*h3.cell_to_latlng(cell))
    far = min(decoys, key=lambda c: abs(great_circle_km(*customer, *h3.cell_to_latlng(c)) - 170))
    sites["far"] = Point(*h3.cell_to_latlng(far))
    # More sites without a grid distance, farther than "across".
    others = sorted({t for _, o, t in pairs if o == origin and t != across})
    for i, cell in enumerate(others[:3]):
        sites[f"across-{i}"] = Point(*h3.cell_to_latlng(cell))
    return customer, sites


@pytest.mark.parametrize("pentagon", h3.get_pentagons(RESOLUTION))
def test_the_nearest_warehouse_across_a_pentagon_is_ranked_first(pentagon: str) -> None:
    customer, sites = _across_the_pentagon(pentagon)
    assert _no_grid_distance(cell_of(customer), cell_of(sites["across"]))
    by_distance = sorted(sites, key=lambda s: great_circle_km(*customer, *sites[s]))
    assert by_distance[0] == "across"
    assert great_circle_km(*customer, *sites["across"]) < 40
    index = RingIndex(sites)  # few sites: rings found by grid distance from the sites' side
    ranked = [site_id for site_id, _ in index.ranked(customer)]
    assert ranked[0] == "across"
    assert ranked == _brute_force_everywhere(sites, customer)
    assert {"far", "across-0"} <= set(ranked)
    # Walking the rings finds the same rings.
    origin = cell_of(customer)
    walked = [sorted(s.site_id for s in ring) for ring in index._rings_by_walking(origin)]
    measured = [sorted(s.site_id for s in ring) for ring in index._rings_by_grid_distance(origin)]
    assert walked == measured


@pytest.mark.parametrize("pentagon", h3.get_pentagons(RESOLUTION))
def test_rings_match_brute_force_around_a_pentagon(pentagon: str) -> None:
    """Random sites and customers within ~400 km of the pentagon, both ways of finding rings."""
    rng = random.Random(pentagon)
    lat, lon = h3.cell_to_latlng(pentagon)
    span_lon = 4 / max(0.2, cos(radians(lat)))

    def around() -> Point:
        return Point(
            max(-89.9, min(89.9, lat + rng.uniform(-4, 4))),
            (lon + rng.uniform(-span_lon, span_lon) + 540) % 360 - 180,
        )

    few = {f"w{i}": around() for i in range(40)}
    many = {f"w{i}": around() for i in range(3 * DISK_CELLS)}  # enough cells to walk the rings
    index_few, index_many = RingIndex(few), RingIndex(many)
    assert len(index_many._by_cell) >= DISK_CELLS
    for _ in range(15):
        customer = around()
        assert [s for s, _ in index_few.ranked(customer)] == _brute_force_everywhere(few, customer)
        assert [s for s, _ in index_many.ranked(customer)] == _brute_force_everywhere(
            many, customer
        )


def test_no_step_between_neighbours_is_longer_than_the_bound() -> None:
    """MAX_NEIGHBOUR_STEP_KM bounds how far RING_MAX_K rings reach (it was measured over every
    cell; here around every pentagon and on a random sample)."""
    rng = random.Random(3)
    cells = [c for p in h3.get_pentagons(RESOLUTION) for c in h3.grid_disk(p, 3)]
    cells += [cell_of(Point(rng.uniform(-89, 89), rng.uniform(-180, 180))) for _ in range(3000)]
    longest = max(
        great_circle_km(*h3.cell_to_latlng(c), *h3.cell_to_latlng(n))
        for c in cells
        for n in h3.grid_disk(c, 1)
    )
    assert 40 < longest <= MAX_NEIGHBOUR_STEP_KM
