"""Ring ranking: nearest H3 ring first, exact distance inside a ring, checked by brute force."""

from __future__ import annotations

import random

import h3
import pytest

from geo.distance import great_circle_km
from geo.rings import DISK_CELLS, RESOLUTION, RING_MAX_K, Point, RingIndex

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
