"""The inventory writer: mirrors each product's live stock from Redis into MongoDB's `inventory`.

Events only say *which* products' stock changed. For those, the writer reads the current stock
hash from Redis and writes it whole, guarded by its version so a document only moves forward. The
version is how many entries the product's partition stream had when the hash was read, read in
the same step (lua/read_stock.lua): every stock change appends to that stream as it happens.
Many changes of one product in a batch become one write, and replays or out-of-order batches
(two consumers, a claimed batch) can never move a document back.

Why one update per command rather than one bulk `update` with an upsert per product:
FerretDB 1.24 (the MongoDB-wire server of the local stack) takes one PostgreSQL connection per
statement of an `update` command and holds them all until the command ends, so a bulk of more
statements than its pool has deadlocks the server; and after one write error (the duplicate key
an upsert meets when a newer version is already stored) it skips the remaining statements even
when unordered. So: guarded updates without upsert, a bounded number in flight, and one
unordered `insert_many` for the products the collection does not have yet (inserts are not
affected). The same code is correct, if less batched, on a real MongoDB.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

from bson.errors import InvalidDocument
from pymongo import errors as mongo_errors
from pymongo.asynchronous.collection import AsyncCollection

from engine import commands, keys
from engine.events import (
    Event,
    MalformedEvent,
    OrderCancelled,
    OrderRerouted,
    OrdersConfirmed,
    StockChanged,
    StockHeld,
    UnknownEvent,
)
from engine.inventory import levels_in
from engine.scripts import ScriptRunner
from stores.mongo import INVENTORY, TRANSIENT_ERRORS, MongoDatabase
from stores.streams import INVENTORY_GROUP, entry_id_order
from writers.consumer import StreamEntry

UPDATES_IN_FLIGHT: Final = 8
# The inventory writer's cost is one document write per distinct product in a batch, not per
# order, and a write to FerretDB costs far more than a row to PostgreSQL, so it reads batches this
# many times larger than the orders writer: the busier the stream, the more orders each write
# covers, and under a sustained peak MongoDB trails Redis by one batch rather than falling behind.
# Not more: a read's replies hold Redis for every other client while it builds them
# (writers/consumer.py, BATCH_ORDERS).
INVENTORY_BATCH_FACTOR: Final = 2
MIRRORED_VERSIONS_MAX: Final = 500_000
DUPLICATE_KEY: Final = 11000

# The document cannot be stored, however often it is tried: the entry goes to the dead letters at
# once. WriteError is one write the server refused (write-concern timeouts are WTimeoutError, in
# stores.mongo.TRANSIENT_ERRORS, retried like the Redis reads). BulkWriteError is not here: it
# also carries write-concern errors, so an entry failing with it goes there after the usual
# number of deliveries instead.
PERMANENT_ERRORS: Final[tuple[type[BaseException], ...]] = (
    InvalidDocument,  # not encodable as BSON; also pymongo's DocumentTooLarge
    mongo_errors.WriteError,
)

InventoryDoc = dict[str, Any]


class _Mirrored(NamedTuple):
    """What MongoDB is known to hold for a product: the state read at `version`, which holds every
    event of its partition's stream up to the entry ID `through`."""

    version: int
    through: tuple[int, int]


def _products(event: Event | UnknownEvent | MalformedEvent) -> set[str]:
    """The products whose stock the event moved (their whole stock is mirrored, not the event)."""
    match event:
        case OrdersConfirmed():
            return event.products
        case OrderCancelled() | OrderRerouted() | StockChanged() | StockHeld():
            return {event.product}
    # A lifecycle step moves no stock (lua/transition.lua). A basket's units move in its lines'
    # own events, each in its product's partition (stock.held; stock.changed when units go back).
    return set()


class InventoryWriter:
    group: Final = INVENTORY_GROUP
    transient_errors: Final = TRANSIENT_ERRORS
    permanent_errors: Final = PERMANENT_ERRORS

    def __init__(
        self,
        runner: ScriptRunner,
        db: MongoDatabase,
        *,
        updates_in_flight: int = UPDATES_IN_FLIGHT,
    ) -> None:
        self._runner = runner
        self._inventory: AsyncCollection[InventoryDoc] = db[INVENTORY]
        self._gate = asyncio.Semaphore(updates_in_flight)
        self._mirrored: dict[str, _Mirrored] = {}

    async def persist(self, entries: Sequence[StreamEntry]) -> list[StreamEntry]:
        last_event: dict[str, tuple[int, int]] = {}
        for entry in entries:
            at = entry_id_order(entry.entry_id)
            for product in _products(entry.event):
                last_event[product] = max(at, last_event.get(product, at))
        # A product whose last event here MongoDB already holds (a state read after it, by an
        # earlier batch) needs no write: under a backlog, most of a batch's products.
        products = sorted(p for p, at in last_event.items() if not self._holds(p, at))
        if products:
            await self.mirror(products)
        return []

    def _holds(self, product: str, event_at: tuple[int, int]) -> bool:
        mirrored = self._mirrored.get(product)
        return mirrored is not None and mirrored.through >= event_at

    async def mirror(self, products: Sequence[str]) -> None:
        """Write the current Redis stock of `products` to MongoDB, never moving a document back."""
        read = await self._current_stock(products)
        docs = [doc for doc, _ in read if self._is_news(doc)]
        unmatched = await self._update_older(docs)
        if unmatched:
            # Not matched: missing, or already as new (another consumer, or an earlier batch
            # that read the same current state). Only the missing ones are inserted.
            stored = await self._stored_versions([doc["_id"] for doc in unmatched])
            raced = await self._insert_missing([d for d in unmatched if d["_id"] not in stored])
            # Inserted meanwhile by another consumer, maybe at an older version: update again.
            # Documents are never deleted, so one not matched now is already as new.
            await self._update_older(raced)
        # Each is now in MongoDB, or an even newer state is (a guard refused it).
        self._remember(read)

    def _remember(self, read: Sequence[tuple[InventoryDoc, tuple[int, int]]]) -> None:
        """What MongoDB is known to hold, so a product whose events span several batches is
        written once. Bounded: forgetting only costs a redundant (guarded) update."""
        if len(self._mirrored) + len(read) > MIRRORED_VERSIONS_MAX:
            self._mirrored.clear()
        for doc, through in read:
            if self._is_news(doc):
                self._mirrored[doc["_id"]] = _Mirrored(doc["version"], through)

    def _is_news(self, doc: InventoryDoc) -> bool:
        """Read at a later position than what MongoDB is known to hold for its product."""
        known = self._mirrored.get(doc["_id"])
        return known is None or known.version < doc["version"]

    async def _stored_versions(self, products: Sequence[str]) -> dict[str, int]:
        cursor = self._inventory.find({"_id": {"$in": list(products)}}, {"version": 1})
        return {doc["_id"]: int(doc.get("version", 0)) async for doc in cursor}

    async def _current_stock(
        self, products: Sequence[str]
    ) -> list[tuple[InventoryDoc, tuple[int, int]]]:
        """Each product's document as Redis holds it now, with the last stream entry ID it holds."""
        by_partition: dict[int, list[str]] = {}
        for product in products:
            by_partition.setdefault(keys.partition_of_product(product), []).append(product)
        reads = [commands.read_stock(p, ids) for p, ids in sorted(by_partition.items())]
        now = datetime.now(UTC)
        read: list[tuple[InventoryDoc, tuple[int, int]]] = []
        for snapshot in await self._runner.run_all(reads):
            if isinstance(snapshot, BaseException):
                raise snapshot
            through = entry_id_order(snapshot.last_entry_id)
            # A stock hash is never deleted; a product without one never was.
            read += [
                (_inventory_doc(product, stock, snapshot.position, now), through)
                for product, stock in snapshot.hashes.items()
            ]
        return read

    async def _update_older(self, docs: Sequence[InventoryDoc]) -> list[InventoryDoc]:
        """Guarded updates; returns the documents whose update matched nothing."""
        matched = await asyncio.gather(*(self._update_one(doc) for doc in docs))
        return [doc for doc, hit in zip(docs, matched, strict=True) if not hit]

    async def _update_one(self, doc: InventoryDoc) -> bool:
        async with self._gate:
            result = await self._inventory.update_one(
                {"_id": doc["_id"], "version": {"$lt": doc["version"]}},
                {"$set": {k: v for k, v in doc.items() if k != "_id"}},
            )
        return result.matched_count > 0

    async def _insert_missing(self, docs: Sequence[InventoryDoc]) -> list[InventoryDoc]:
        """Insert the documents; returns those that already existed (duplicate key)."""
        if not docs:
            return []
        try:
            await self._inventory.insert_many(list(docs), ordered=False)
        except mongo_errors.BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if exc.details.get("writeConcernErrors") or any(
                error.get("code") != DUPLICATE_KEY for error in errors
            ):
                raise
            return [docs[int(error["index"])] for error in errors]
        return []


def _inventory_doc(
    product: str, stock: dict[str, str], version: int, now: datetime
) -> InventoryDoc:
    levels = [
        {"warehouseId": w, "quantity": level} for w, level in sorted(levels_in(stock).items())
    ]
    return {
        "_id": product,
        "productId": product,
        "stockLevels": levels,
        "version": version,
        "updatedAt": now,
    }
