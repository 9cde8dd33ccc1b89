"""The basket allocation rule (engine/allocation.py), checked against a brute force over every
subset of warehouses and on hand-made cases."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from math import fsum

import pytest

from engine import allocation
from engine.allocation import Allocation, Part, Shortfall, allocate

Lines = Sequence[tuple[str, int]]
Levels = Mapping[str, Mapping[str, int]]
Distances = Mapping[str, float]


@dataclass(frozen=True, slots=True)
class Best:
    """The brute force's answer: the short lines, or the best set's size, sum and IDs."""

    short: tuple[str, ...]
    size: int = 0
    distance_km: float = 0.0
    warehouse_ids: tuple[str, ...] = ()


def level(levels: Levels, product_id: str, warehouse_id: str) -> int:
    return max(0, levels.get(product_id, {}).get(warehouse_id, 0))


def brute_force(lines: Lines, levels: Levels, distance_km: Distances) -> Best:
    usable = sorted(distance_km)

    def holds(warehouses: Sequence[str], product_id: str, quantity: int) -> bool:
        return sum(level(levels, product_id, w) for w in warehouses) >= quantity

    short = tuple(p for p, q in lines if not holds(usable, p, q))
    if short:
        return Best(short)
    for size in range(1, len(usable) + 1):
        fits = [ws for ws in combinations(usable, size) if all(holds(ws, p, q) for p, q in lines)]
        if fits:
            best = min(fits, key=lambda ws: (fsum(distance_km[w] for w in ws), ws))
            return Best((), size, fsum(distance_km[w] for w in best), best)
    raise AssertionError("every line can be filled, so all usable warehouses together fit")


def check_valid(lines: Lines, levels: Levels, distance_km: Distances, answer: Allocation) -> None:
    ids = answer.warehouse_ids
    assert len(set(ids)) == len(ids)
    assert list(ids) == sorted(ids, key=lambda w: (distance_km[w], w))
    assert answer.distance_km == pytest.approx(fsum(distance_km[w] for w in ids), abs=1e-9)
    assert {part.warehouse_id for part in answer.parts} == set(ids)
    cells = [(part.warehouse_id, part.product_id) for part in answer.parts]
    assert len(set(cells)) == len(cells)
    line_at = {p: i for i, (p, _) in enumerate(lines)}
    order = [(ids.index(part.warehouse_id), line_at[part.product_id]) for part in answer.parts]
    assert order == sorted(order)
    for part in answer.parts:
        assert 0 < part.quantity <= level(levels, part.product_id, part.warehouse_id)
    for product_id, quantity in lines:
        mine = [part for part in answer.parts if part.product_id == product_id]
        assert sum(part.quantity for part in mine) == quantity
        whole = [w for w in ids if level(levels, product_id, w) >= quantity]
        if whole:
            assert mine == [Part(whole[0], product_id, quantity)]
        else:
            # Split: every part but the last empties its warehouse, nearest first.
            assert len(mine) >= 2
            for part in mine[:-1]:
                assert part.quantity == level(levels, product_id, part.warehouse_id)
            used = [part.warehouse_id for part in mine]
            stocked = [w for w in ids if level(levels, product_id, w) > 0]
            assert used == stocked[: len(used)]


def random_instance(
    rng: random.Random,
) -> tuple[list[tuple[str, int]], dict[str, dict[str, int]], dict[str, float]]:
    warehouses = [f"w{i}" for i in rng.sample(range(10), rng.randint(1, 8))]
    # Whole kilometres make equal sums exact, so the ID tie-break is reached and checkable.
    whole_km = rng.random() < 0.5
    distance_km = {
        w: float(rng.randint(0, 6)) if whole_km else rng.uniform(0.0, 100.0)
        for w in warehouses
        if rng.random() < 0.9
    }
    lines = [(f"p{i}", rng.randint(1, 6)) for i in range(rng.randint(1, 4))]
    # Scarce stock now and then, so that baskets needing several warehouses are common.
    choices = (-1, 0, 1, 1, 2, 3) if rng.random() < 0.3 else (-1, 0, 0, 1, 2, 3, 4, 6, 8)
    levels = {
        p: {w: rng.choice(choices) for w in warehouses if rng.random() < 0.8} for p, _ in lines
    }
    return lines, levels, distance_km


def test_agrees_with_the_brute_force_on_random_baskets() -> None:
    rng = random.Random(20240611)
    seen: Counter[str] = Counter()
    for _ in range(4000):
        lines, levels, distance_km = random_instance(rng)
        best = brute_force(lines, levels, distance_km)
        answer = allocate(lines, levels, distance_km)
        if best.short:
            assert answer == Shortfall(best.short)
            seen["shortfall"] += 1
            continue
        assert isinstance(answer, Allocation)
        check_valid(lines, levels, distance_km, answer)
        if best.size <= allocation.EXACT_MAX_WAREHOUSES:
            assert answer.rule == "exact"
            assert len(answer.warehouse_ids) == best.size
            assert answer.distance_km == pytest.approx(best.distance_km, abs=1e-9)
            if all(km.is_integer() for km in distance_km.values()):
                assert tuple(sorted(answer.warehouse_ids)) == best.warehouse_ids
            seen[f"size {best.size}"] += 1
        else:
            # Past the exact search the greedy gives a valid cover, never a smaller one.
            assert answer.rule == "greedy"
            assert len(answer.warehouse_ids) >= best.size
            seen["greedy"] += 1
    # The generator must keep reaching every kind of answer, or this test proves little.
    for kind in ("shortfall", "size 1", "size 2", "size 3", "greedy"):
        assert seen[kind] >= 20, seen


def test_fewest_warehouses_before_distance() -> None:
    lines = [("a", 1), ("b", 1)]
    levels = {"a": {"far": 5, "near-a": 5}, "b": {"far": 5, "near-b": 5}}
    distance_km = {"far": 900.0, "near-a": 1.0, "near-b": 2.0}
    answer = allocate(lines, levels, distance_km)
    assert answer == Allocation(
        parts=(Part("far", "a", 1), Part("far", "b", 1)),
        warehouse_ids=("far",),
        distance_km=900.0,
        rule="exact",
    )


@pytest.mark.parametrize(
    ("distance_km", "expected"),
    [
        # b+c is nearest.
        ({"a": 3.0, "b": 1.0, "c": 4.0, "d": 4.0}, ("b", "c")),
        # b+c and a+d both at 5: the smaller sorted IDs win, though b+c is met first.
        ({"a": 2.0, "b": 1.0, "c": 4.0, "d": 3.0}, ("a", "d")),
        # a+c is nearest.
        ({"a": 1.0, "b": 2.0, "c": 3.0, "d": 9.0}, ("a", "c")),
    ],
)
def test_equal_sizes_by_distance_then_ids(
    distance_km: Distances, expected: tuple[str, ...]
) -> None:
    # Pairs that hold x, y and z: a+d, b+c, a+c; no warehouse holds all three.
    lines = [("x", 1), ("y", 1), ("z", 1)]
    levels = {"x": {"a": 1, "b": 1}, "y": {"a": 1, "c": 1}, "z": {"c": 1, "d": 1}}
    answer = allocate(lines, levels, distance_km)
    assert isinstance(answer, Allocation)
    assert answer.warehouse_ids == expected
    assert answer.rule == "exact"
    check_valid(lines, levels, distance_km, answer)


def test_same_distance_same_size_smallest_id() -> None:
    levels = {"x": {"w2": 3, "w1": 3, "w3": 3}}
    answer = allocate([("x", 2)], levels, {"w3": 5.0, "w2": 5.0, "w1": 5.0})
    assert isinstance(answer, Allocation)
    assert answer.warehouse_ids == ("w1",)


def test_a_line_is_split_when_no_warehouse_has_it_whole() -> None:
    lines = [("a", 10)]
    levels = {"a": {"near": 6, "far": 6}}
    answer = allocate(lines, levels, {"near": 1.0, "far": 2.0})
    assert answer == Allocation(
        parts=(Part("near", "a", 6), Part("far", "a", 4)),
        warehouse_ids=("near", "far"),
        distance_km=3.0,
        rule="exact",
    )


def test_a_line_goes_whole_to_the_nearest_chosen_warehouse_that_has_it() -> None:
    # near and far are both needed (b is only at far); a is whole only at far, so it goes there
    # whole though near has some of it.
    lines = [("a", 5), ("b", 1), ("c", 2)]
    levels = {"a": {"near": 3, "far": 5}, "b": {"far": 1}, "c": {"near": 2, "far": 2}}
    answer = allocate(lines, levels, {"near": 1.0, "far": 2.0})
    assert answer == Allocation(
        parts=(Part("far", "a", 5), Part("far", "b", 1), Part("far", "c", 2)),
        warehouse_ids=("far",),
        distance_km=2.0,
        rule="exact",
    )
    levels = {"a": {"near": 3, "far": 5}, "b": {"far": 1}, "c": {"near": 2}}
    answer = allocate(lines, levels, {"near": 1.0, "far": 2.0})
    assert isinstance(answer, Allocation)
    assert answer.parts == (Part("near", "c", 2), Part("far", "a", 5), Part("far", "b", 1))


def test_a_warehouse_without_a_distance_is_never_used() -> None:
    lines = [("a", 2), ("b", 2)]
    levels = {"a": {"hidden": 9, "w1": 2}, "b": {"hidden": 9, "w2": 2}}
    answer = allocate(lines, levels, {"w1": 10.0, "w2": 20.0})
    assert isinstance(answer, Allocation)
    assert answer.warehouse_ids == ("w1", "w2")
    assert allocate([("a", 3)], levels, {"w1": 10.0}) == Shortfall(("a",))


def test_shortfall_names_only_the_short_lines_in_basket_order() -> None:
    lines = [("c", 1), ("a", 5), ("b", 2), ("d", 1)]
    levels = {"a": {"w1": 3, "w2": 1}, "b": {"w1": 2}, "c": {"w1": 0, "w2": -4}}
    answer = allocate(lines, levels, {"w1": 1.0, "w2": 2.0})
    assert answer == Shortfall(("c", "a", "d"))


def test_more_than_three_warehouses_is_greedy_and_a_valid_cover() -> None:
    lines = [(f"p{i}", 2) for i in range(5)]
    # Each product at its own warehouse, plus decoys that hold a little of several.
    levels: dict[str, dict[str, int]] = {f"p{i}": {f"w{i}": 2, "decoy": 1} for i in range(5)}
    distance_km = {f"w{i}": float(10 + i) for i in range(5)} | {"decoy": 1.0}
    answer = allocate(lines, levels, distance_km)
    assert isinstance(answer, Allocation)
    assert answer.rule == "greedy"
    assert answer.warehouse_ids == ("w0", "w1", "w2", "w3", "w4")
    check_valid(lines, levels, distance_km, answer)


def test_the_greedy_drops_a_warehouse_later_picks_make_redundant() -> None:
    # "big" covers the most units, so the greedy takes it first; near, mid, e and f are needed
    # anyway and hold all it does. Kept, it would take part of the split line g.
    lines = [("a", 4), ("b", 4), ("c", 4), ("g", 4), ("d", 4), ("e", 4)]
    levels = {
        "a": {"big": 3, "near": 4},
        "b": {"big": 3, "near": 4},
        "c": {"big": 3, "mid": 4},
        "g": {"big": 2, "near": 2, "mid": 2},
        "d": {"e": 4},
        "e": {"f": 4},
    }
    distance_km = {"big": 1.0, "near": 2.0, "mid": 3.0, "e": 10.0, "f": 11.0}
    answer = allocate(lines, levels, distance_km)
    assert isinstance(answer, Allocation)
    assert answer.rule == "greedy"
    assert answer.warehouse_ids == ("near", "mid", "e", "f")
    check_valid(lines, levels, distance_km, answer)


def test_past_the_search_budget_the_greedy_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocation, "EXACT_SEARCH_MAX_LINE_CHECKS", 0)
    lines = [("a", 1)]
    levels = {"a": {"w1": 1}}
    answer = allocate(lines, levels, {"w1": 1.0})
    assert isinstance(answer, Allocation)
    assert answer.rule == "greedy"
    assert answer.warehouse_ids == ("w1",)


def test_an_empty_basket_is_refused() -> None:
    with pytest.raises(ValueError):
        allocate([], {}, {})


def test_many_warehouses_and_lines() -> None:
    rng = random.Random(7)
    warehouses = [f"wh-{i:03d}" for i in range(150)]
    distance_km = {w: rng.uniform(1.0, 3000.0) for w in warehouses}
    lines = [(f"sku-{i}", rng.randint(1, 4)) for i in range(10)]
    levels = {p: {w: rng.randint(0, 5) for w in warehouses if rng.random() < 0.3} for p, _ in lines}
    answer = allocate(lines, levels, distance_km)
    assert isinstance(answer, Allocation)
    check_valid(lines, levels, distance_km, answer)
