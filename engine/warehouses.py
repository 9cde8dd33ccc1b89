"""Warehouses and the directory that ranks them by distance from a customer."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from engine.delivery import delivery_days
from geo.distance import Point
from geo.rings import RING_CACHE_CELLS, RankedSite, RingIndex, cell_of

# (warehouse_id, delivery days) of the warehouses an order may take its units from, nearest first.
Candidates = tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class Warehouse:
    warehouse_id: str
    name: str
    location: Point


class WarehouseDirectory:
    """The warehouses this process knows, indexed by H3 cell; replaced whole on change."""

    def __init__(self, warehouses: Iterable[Warehouse] = (), version: int = 0) -> None:
        self.version = version
        self._by_id = {w.warehouse_id: w for w in warehouses}
        self._index = RingIndex({w.warehouse_id: w.location for w in self._by_id.values()})
        self._candidates_in_cell = lru_cache(maxsize=RING_CACHE_CELLS)(self._fixed_candidates)

    def __contains__(self, warehouse_id: object) -> bool:
        return warehouse_id in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, warehouse_id: str) -> Warehouse | None:
        return self._by_id.get(warehouse_id)

    def all(self) -> list[Warehouse]:
        return sorted(self._by_id.values(), key=lambda w: w.warehouse_id)

    def nearest_first(self, customer: Point) -> list[RankedSite]:
        """Warehouses within the ring walk: nearest ring first, exact distance inside a ring."""
        return self._index.ranked(customer)

    def candidates(self, customer: Point) -> Candidates:
        """nearest_first's warehouses with the delivery days of each: an order's candidates."""
        cell = cell_of(customer)
        fixed = self._candidates_in_cell(cell)
        if fixed is not None:
            return fixed
        return tuple(
            (site_id, delivery_days(km)) for site_id, km in self._index.ranked(customer, cell)
        )

    def _fixed_candidates(self, cell: str) -> Candidates | None:
        """The candidates of every point of `cell`, when the ranking and each warehouse's days
        are the same all over the cell (most cells): an order from it then computes no distance."""
        fixed = self._index.fixed_ranking(cell)
        if fixed is None:
            return None
        candidates = tuple((site_id, delivery_days(least_km)) for site_id, least_km, _ in fixed)
        for (_, days), (_, _, most_km) in zip(candidates, fixed, strict=True):
            if delivery_days(most_km) != days:
                return None
        return candidates

    def by_distance(self, customer: Point, warehouse_ids: Iterable[str]) -> list[RankedSite]:
        """Known warehouses among `warehouse_ids`, by exact distance (for those past the rings)."""
        return self._index.beyond(customer, warehouse_ids)

    def distance_km(self, customer: Point, warehouse_id: str) -> float:
        return self._index.distance_km(customer, warehouse_id)


class Warehouses(Protocol):
    """Where the engine finds the warehouses: the directory as last loaded, and a reload for when
    it meets stock at a warehouse that directory does not know (one created moments ago)."""

    @property
    def directory(self) -> WarehouseDirectory: ...

    async def reload(self) -> WarehouseDirectory: ...


class FixedWarehouses:
    """A directory that never changes: for tests and the benchmark's engine."""

    def __init__(self, directory: WarehouseDirectory) -> None:
        self.directory = directory

    async def reload(self) -> WarehouseDirectory:
        return self.directory
