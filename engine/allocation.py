"""Basket allocation: which warehouses serve a basket of several lines, and what each one sends.

The rule, in order: the fewest warehouses that together hold every line (a line may be split over
them); among those, the smallest sum of distances from the customer; then the smallest sorted tuple
of warehouse IDs, so the answer is deterministic. Inside the chosen set a line goes whole to the
nearest warehouse that has all of it (ties by ID), and is split, nearest first, each warehouse
giving what it has, only when none does.

The answer is exact whenever it needs at most `EXACT_MAX_WAREHOUSES` warehouses: singles, then
pairs, then triples of the candidates (warehouses with a distance and stock of some line), nearest
first, cut short by branch-and-bound on the distance sum and by what the candidates not yet
considered could still supply. The last member of a set is not searched for: the nearest
candidate holding all that is still missing is looked up in per-line bitsets, which settles every
set extending that partial set at once. A search that would weigh more than
`EXACT_SEARCH_MAX_LINE_CHECKS` lines of partial sets for one basket (each partial set tried costs
one check per line) gives up on being exact: it runs on the worker's event loop, so its time is
bounded whatever the basket and the number of warehouses.

Past that, or past that budget, the greedy decides, and the result says so (`rule == "greedy"`):
repeatedly add the warehouse that covers the most still-uncovered units, each line counted up to
what it still needs, ties to the nearer warehouse and then the smaller ID, until every line is
covered; then drop, farthest first, each warehouse the others make redundant; then assign the lines
as above. It is a cover, not necessarily the smallest or the nearest one.

Pure: no I/O. Callers pass the stock levels and the distances they have read.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

AllocationRule = Literal["exact", "greedy"]

EXACT_MAX_WAREHOUSES: Final = 3
# Per basket, over all sizes: partial sets tried (a member added, or the completions looked up)
# times the basket's lines.
EXACT_SEARCH_MAX_LINE_CHECKS: Final = 200_000


@dataclass(frozen=True, slots=True)
class Part:
    """Units of one line taken at one warehouse."""

    warehouse_id: str
    product_id: str
    quantity: int


@dataclass(frozen=True, slots=True)
class Allocation:
    """The warehouses that serve a basket and the parts each sends."""

    parts: tuple[Part, ...]  # by warehouse (in `warehouse_ids` order), then in the basket's order
    warehouse_ids: tuple[str, ...]  # nearest first, ties by ID
    distance_km: float  # the sum over `warehouse_ids`
    rule: AllocationRule

    def parts_at(self, warehouse_id: str) -> tuple[Part, ...]:
        """What one warehouse sends: its shipment."""
        return tuple(p for p in self.parts if p.warehouse_id == warehouse_id)


@dataclass(frozen=True, slots=True)
class Shortfall:
    """The basket cannot be filled even by every usable warehouse together; nothing is taken."""

    product_ids: tuple[str, ...]  # the lines no combination of warehouses can fill, basket order


@dataclass(frozen=True, slots=True)
class _Candidate:
    warehouse_id: str
    distance_km: float
    # Per line, its level capped at the line's quantity: a warehouse never needs to give more than
    # the whole line, and the cap keeps sums of supply honest about that.
    supply: tuple[int, ...]


class _OverBudget(Exception):
    """The exact search would examine more sets than it may."""


def allocate(
    lines: Sequence[tuple[str, int]],
    levels: Mapping[str, Mapping[str, int]],
    distance_km: Mapping[str, float],
) -> Allocation | Shortfall:
    """The warehouses that serve `lines` and the parts each sends, or the lines none can fill."""
    if not lines:
        raise ValueError("a basket has at least one line")
    quantities = tuple(quantity for _, quantity in lines)
    candidates = _candidates(lines, levels, distance_km)
    short = _short_lines(quantities, candidates, range(len(candidates)))
    if short:
        return Shortfall(tuple(lines[p][0] for p in short))
    chosen = _exact(quantities, candidates)
    if chosen is not None:
        return _allocation(lines, candidates, chosen, "exact")
    return _allocation(lines, candidates, _greedy(quantities, candidates), "greedy")


def _candidates(
    lines: Sequence[tuple[str, int]],
    levels: Mapping[str, Mapping[str, int]],
    distance_km: Mapping[str, float],
) -> list[_Candidate]:
    """Warehouses with a distance and stock of some line, nearest first, ties by ID."""
    supply_at: dict[str, list[int]] = {}
    for p, (product_id, quantity) in enumerate(lines):
        stock = levels.get(product_id)
        if stock is None:
            continue
        for warehouse_id, level in stock.items():
            if level > 0 and warehouse_id in distance_km:
                supply_at.setdefault(warehouse_id, [0] * len(lines))[p] = min(level, quantity)
    found = [_Candidate(w, distance_km[w], tuple(supply)) for w, supply in supply_at.items()]
    found.sort(key=lambda c: (c.distance_km, c.warehouse_id))
    return found


def _short_lines(
    quantities: tuple[int, ...], candidates: Sequence[_Candidate], chosen: Sequence[int]
) -> list[int]:
    """The lines the `chosen` candidates cannot fill together."""
    return [
        p
        for p, quantity in enumerate(quantities)
        if sum(candidates[c].supply[p] for c in chosen) < quantity
    ]


def _total_km(candidates: Sequence[_Candidate], chosen: Sequence[int]) -> float:
    # One by one, nearest first, as the search sums a set: the reported sum is then exactly the
    # one the search ranked, not a differently rounded one.
    total = 0.0
    for c in chosen:
        total += candidates[c].distance_km
    return total


def _exact(quantities: tuple[int, ...], candidates: Sequence[_Candidate]) -> tuple[int, ...] | None:
    """The best set (indexes into `candidates`) of at most `EXACT_MAX_WAREHOUSES`, or None when
    there is none or the search ran past its budget."""
    holders = _Holders(candidates, len(quantities))
    ahead = _supply_ahead(candidates, len(quantities), EXACT_MAX_WAREHOUSES - 1)
    budget = _Budget(EXACT_SEARCH_MAX_LINE_CHECKS, len(quantities))
    for size in range(1, EXACT_MAX_WAREHOUSES + 1):
        try:
            best = _best_of_size(size, quantities, candidates, holders, ahead, budget)
        except _OverBudget:
            return None
        if best is not None:
            return best
    return None


class _Budget:
    """What the exact search may still spend, in line checks, over all sizes of one basket."""

    def __init__(self, line_checks: int, lines: int) -> None:
        self._left = line_checks
        self._per_set = lines

    def spend(self) -> None:
        """One partial set tried; _OverBudget once the budget is spent."""
        self._left -= self._per_set
        if self._left < 0:
            raise _OverBudget


class _Holders:
    """Per line, the candidates holding at least so many units, as bitsets of candidate indexes,
    so that the last member of a set is looked up rather than searched for."""

    def __init__(self, candidates: Sequence[_Candidate], line_count: int) -> None:
        self._everyone = (1 << len(candidates)) - 1
        self._counts: list[list[int]] = []  # per line, the distinct unit counts held, ascending
        self._masks: list[list[int]] = []  # per line and count: who holds at least that many
        for p in range(line_count):
            at: dict[int, int] = {}
            for c, candidate in enumerate(candidates):
                if candidate.supply[p] > 0:
                    at[candidate.supply[p]] = at.get(candidate.supply[p], 0) | (1 << c)
            counts = sorted(at)
            masks = [0] * len(counts)
            holding = 0
            for k in range(len(counts) - 1, -1, -1):
                holding |= at[counts[k]]
                masks[k] = holding
            self._counts.append(counts)
            self._masks.append(masks)

    def completing(self, missing: tuple[int, ...]) -> int:
        """The candidates that alone hold everything still `missing`."""
        fits = self._everyone
        for p, quantity in enumerate(missing):
            if quantity > 0:
                k = bisect_left(self._counts[p], quantity)
                if k == len(self._counts[p]):
                    return 0
                fits &= self._masks[p][k]
                if not fits:
                    return 0
        return fits


def _supply_ahead(
    candidates: Sequence[_Candidate], line_count: int, most: int
) -> list[list[tuple[int, ...]]]:
    """`ahead[m - 1][j][p]`: the most units of line `p` that any `m` candidates from `j` on hold
    together, for `m` up to `most`; the search skips a partial set the rest cannot complete."""
    n = len(candidates)
    ahead = [[(0,) * line_count for _ in range(n + 1)] for _ in range(most)]
    largest: list[list[int]] = [[] for _ in range(line_count)]  # per line, descending
    for j in range(n - 1, -1, -1):
        for p, held in enumerate(candidates[j].supply):
            top = largest[p]
            top.append(held)
            top.sort(reverse=True)
            del top[most:]
        for m in range(most):
            ahead[m][j] = tuple(sum(top[: m + 1]) for top in largest)
    return ahead


def _best_of_size(
    size: int,
    quantities: tuple[int, ...],
    candidates: Sequence[_Candidate],
    holders: _Holders,
    ahead: Sequence[Sequence[tuple[int, ...]]],
    budget: _Budget,
) -> tuple[int, ...] | None:
    """The set of `size` candidates that holds every line at the smallest distance sum, then the
    smallest sorted IDs; None when no such set exists. Raises `_OverBudget`."""
    n = len(candidates)
    best: tuple[float, tuple[str, ...], tuple[int, ...]] | None = None

    def complete(
        start: int, chosen: tuple[int, ...], spent_km: float, missing: tuple[int, ...]
    ) -> None:
        nonlocal best
        budget.spend()
        fits = holders.completing(missing) >> start
        if not fits:
            return
        # The lowest index is the nearest completion, then the smallest ID: no other completion
        # of `chosen` can rank before it.
        last = start + (fits & -fits).bit_length() - 1
        found = (*chosen, last)
        key = (
            spent_km + candidates[last].distance_km,
            tuple(sorted(candidates[c].warehouse_id for c in found)),
        )
        if best is None or key < best[:2]:
            best = (*key, found)

    def extend(
        start: int, chosen: tuple[int, ...], spent_km: float, missing: tuple[int, ...]
    ) -> None:
        still = size - len(chosen)  # members to add, counting the one picked here
        if still == 1:
            complete(start, chosen, spent_km, missing)
            return
        for c in range(start, n - still + 1):
            # Candidates are nearest first, so the next ones complete a set most cheaply, and the
            # bound only grows with `c`: once it exceeds the best sum no later `c` can do better.
            bound = spent_km
            for d in range(c, c + still):
                bound += candidates[d].distance_km
            if best is not None and bound > best[0]:
                return
            budget.spend()
            left = tuple(max(0, m - u) for u, m in zip(candidates[c].supply, missing, strict=True))
            if all(m <= s for m, s in zip(left, ahead[still - 2][c + 1], strict=True)):
                extend(c + 1, (*chosen, c), spent_km + candidates[c].distance_km, left)

    extend(0, (), 0.0, quantities)
    return None if best is None else best[2]


def _greedy(quantities: tuple[int, ...], candidates: Sequence[_Candidate]) -> list[int]:
    """A cover by the greedy of the module docstring; every line can be filled (checked before)."""
    missing = list(quantities)
    chosen: list[int] = []
    while any(missing):
        gains = [
            0 if c in chosen else sum(min(u, m) for u, m in zip(w.supply, missing, strict=True))
            for c, w in enumerate(candidates)
        ]
        # max() keeps the first of equal gains: the nearer candidate, then the smaller ID.
        pick = max(range(len(candidates)), key=gains.__getitem__)
        chosen.append(pick)
        missing = [max(0, m - u) for u, m in zip(candidates[pick].supply, missing, strict=True)]
    return _without_redundant(quantities, candidates, sorted(chosen))


def _without_redundant(
    quantities: tuple[int, ...], candidates: Sequence[_Candidate], chosen: Sequence[int]
) -> list[int]:
    # An early pick may be made redundant by later ones; fewest warehouses comes first, and
    # dropping the farthest redundant ones first saves the most distance.
    kept = list(chosen)
    for c in reversed(chosen):
        rest = [k for k in kept if k != c]
        if not _short_lines(quantities, candidates, rest):
            kept = rest
    return kept


def _allocation(
    lines: Sequence[tuple[str, int]],
    candidates: Sequence[_Candidate],
    chosen: Sequence[int],
    rule: AllocationRule,
) -> Allocation:
    """Each line's parts within `chosen` (indexes, nearest first), gathered by warehouse."""
    parts_at: dict[int, list[Part]] = {c: [] for c in chosen}
    for p, (product_id, quantity) in enumerate(lines):
        held = [(c, candidates[c].supply[p]) for c in chosen]
        for c, taken in _take(quantity, held):
            parts_at[c].append(Part(candidates[c].warehouse_id, product_id, taken))
    # In a set none of whose members is redundant every member gets a part; this keeps the
    # result honest even if one did not.
    used = [c for c in chosen if parts_at[c]]
    return Allocation(
        parts=tuple(part for c in used for part in parts_at[c]),
        warehouse_ids=tuple(candidates[c].warehouse_id for c in used),
        distance_km=_total_km(candidates, used),
        rule=rule,
    )


def _take(quantity: int, held: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Where one line's units come from, given (candidate, its supply of the line) nearest first:
    whole from the nearest that holds all of it; split, nearest first, only when none does."""
    for c, supply in held:
        if supply >= quantity:
            return [(c, quantity)]
    taken: list[tuple[int, int]] = []
    missing = quantity
    for c, supply in held:
        if missing == 0:
            break
        if supply > 0:
            give = min(supply, missing)
            taken.append((c, give))
            missing -= give
    return taken
