"""Choosing the warehouse in Python: the directory's ranking (engine/warehouses.py over
geo/rings.py) and the delivery-date rule (engine/delivery.py)."""

from __future__ import annotations

import random
from datetime import date

import h3
import pytest

from engine.delivery import delivery_days, estimated_delivery
from engine.warehouses import Warehouse, WarehouseDirectory
from geo.distance import Point
from geo.rings import cell_of

PARIS = Point(48.8566, 2.3522)
WAREHOUSES = (
    Warehouse("w-paris", "Paris", Point(48.86, 2.35)),
    Warehouse("w-orleans", "Orléans", Point(47.90, 1.90)),
    Warehouse("w-lyon", "Lyon", Point(45.76, 4.84)),
    Warehouse("w-madrid", "Madrid", Point(40.42, -3.70)),
)


def test_nearest_first_within_the_rings() -> None:
    directory = WarehouseDirectory(WAREHOUSES, version=7)
    ranked = directory.nearest_first(PARIS)
    assert [w for w, _ in ranked] == ["w-paris", "w-orleans", "w-lyon"]  # Madrid: past the rings
    assert [km for _, km in ranked] == sorted(km for _, km in ranked)
    assert ranked[0][1] < 1.0
    assert directory.version == 7 and len(directory) == 4


def test_warehouses_beyond_the_rings_ranked_by_distance() -> None:
    directory = WarehouseDirectory(WAREHOUSES)
    ranked = directory.by_distance(PARIS, ["w-madrid", "w-lyon", "w-unknown"])
    assert [w for w, _ in ranked] == ["w-lyon", "w-madrid"]  # an unknown one is left out
    assert directory.distance_km(PARIS, "w-madrid") == pytest.approx(1_053, rel=0.01)


def test_directory_lookups() -> None:
    directory = WarehouseDirectory(WAREHOUSES)
    assert "w-lyon" in directory and "w-nowhere" not in directory
    assert directory.get("w-lyon") == WAREHOUSES[2]
    assert directory.get("w-nowhere") is None
    assert [w.warehouse_id for w in directory.all()] == sorted(w.warehouse_id for w in WAREHOUSES)
    assert WarehouseDirectory().nearest_first(PARIS) == []


@pytest.mark.parametrize(
    ("km", "days"),
    [(0.0, 2), (30.0, 2), (499.9, 2), (500.0, 2), (500.1, 3), (1_200.0, 4), (5_000.0, 11)],
)
def test_delivery_days_one_handling_day_then_one_per_started_500_km(km: float, days: int) -> None:
    assert delivery_days(km) == days


def test_estimated_delivery_counts_utc_calendar_days() -> None:
    late_on_new_years_eve_ms = 1_704_067_199_000  # 2023-12-31 23:59:59 UTC
    assert estimated_delivery(late_on_new_years_eve_ms, 2) == date(2024, 1, 2)
    assert estimated_delivery(late_on_new_years_eve_ms + 999, 2) == date(2024, 1, 2)
    assert estimated_delivery(late_on_new_years_eve_ms + 1_000, 2) == date(2024, 1, 3)
    assert estimated_delivery(0, 0) == date(1970, 1, 1)


def test_candidates_are_the_exact_ranking_with_days_in_every_cell() -> None:
    """A cell's candidates are computed once when they hold for every point of it: they must be
    what ranking each point exactly gives. Warehouse sets from dense (one ring holds several,
    close together: the order depends on the point) to sparse (a warehouse per ring, some near
    the 500 km steps of the delivery days)."""
    rng = random.Random(7)
    fixed_cells = moving_cells = 0
    for spread in (0.3, 1.5, 4.0, 8.0, 12.0):  # degrees: warehouses a few to ~1,000 km apart
        for _ in range(3):
            centre = Point(rng.uniform(-60, 60), rng.uniform(-170, 170))
            directory = WarehouseDirectory(
                Warehouse(f"w{i}", f"W{i}", _near(rng, centre, spread))
                for i in range(rng.randint(2, 30))
            )
            for _ in range(100):
                anchor = _near(rng, centre, spread * 1.5)
                others = (_near(rng, anchor, 0.2) for _ in range(4))
                for customer in (anchor, *others, *_towards_the_corners(cell_of(anchor))):
                    expected = tuple(
                        (site_id, delivery_days(km))
                        for site_id, km in directory.nearest_first(customer)
                    )
                    assert directory.candidates(customer) == expected
                    if directory._candidates_in_cell(cell_of(customer)) is None:
                        moving_cells += 1
                    else:
                        fixed_cells += 1
    assert fixed_cells > 1_000 and moving_cells > 1_000  # both ways were taken, often


def _towards_the_corners(cell: str) -> list[Point]:
    """Points of the cell near each of its vertices: the farthest from its centre, where a
    bound on distances taken from the centre is tightest."""
    lat, lon = h3.cell_to_latlng(cell)
    near_vertices = [
        Point(lat + 0.999 * (v_lat - lat), lon + 0.999 * (v_lon - lon))
        for v_lat, v_lon in h3.cell_to_boundary(cell)
    ]
    return [p for p in near_vertices if cell_of(p) == cell]


def _near(rng: random.Random, point: Point, degrees: float) -> Point:
    return Point(
        max(-89.0, min(89.0, point.lat + rng.uniform(-degrees, degrees))),
        point.lon + rng.uniform(-degrees, degrees),
    )
