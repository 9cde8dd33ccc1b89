"""The warehouses in MongoDB, as a worker knows them: the directory it ranks orders with, loaded
whole, and reloaded when the warehouse set's version in Redis moves (every worker polls it, so a
warehouse created through one worker is known to all within a poll).

This repository is the only place that reads or inserts warehouse documents and moves the
version; the engine reads `directory` and asks for `reload()` (engine.warehouses.Warehouses).
"""

from __future__ import annotations

from pymongo.errors import DuplicateKeyError

from engine import keys
from engine.errors import WarehouseExists
from engine.warehouses import Warehouse, WarehouseDirectory
from geo.distance import Point
from stores.breaker import Breaker
from stores.mongo import TRANSIENT_ERRORS as MONGO_TRANSIENT_ERRORS
from stores.mongo import WAREHOUSES, MongoDatabase
from stores.redis import RedisClient


class WarehouseRepository:
    def __init__(self, redis: RedisClient, mongo: MongoDatabase, breaker: Breaker) -> None:
        self._redis = redis
        self._mongo = mongo
        self._breaker = breaker
        self.directory = WarehouseDirectory()

    async def reload(self) -> WarehouseDirectory:
        return await self._load(await self._version())

    async def reload_if_changed(self) -> None:
        """What the poller runs: a reload when another worker changed the set."""
        version = await self._version()
        if version != self.directory.version:
            await self._load(version)

    async def _version(self) -> int:
        return int(await self._redis.get(keys.WAREHOUSES_VERSION_KEY) or 0)

    async def _load(self, version: int) -> WarehouseDirectory:
        """The warehouses as of `version`, read before them: a change landing during the read
        moves it again, so the next poll reloads once more rather than keeping a stale set."""
        with self._breaker.guard(MONGO_TRANSIENT_ERRORS):
            warehouses = [
                Warehouse(doc["_id"], doc["name"], Point(doc["lat"], doc["lon"]))
                async for doc in self._mongo[WAREHOUSES].find({})
            ]
        self.directory = WarehouseDirectory(warehouses, version)
        return self.directory

    async def add(self, warehouse: Warehouse) -> None:
        """Insert it (WarehouseExists if its ID is taken) and tell every worker, this one at
        once."""
        doc = {
            "_id": warehouse.warehouse_id,
            "name": warehouse.name,
            "lat": warehouse.location.lat,
            "lon": warehouse.location.lon,
        }
        try:
            await self._mongo[WAREHOUSES].insert_one(doc)
        except DuplicateKeyError as exc:
            raise WarehouseExists(warehouse.warehouse_id) from exc
        await self._redis.incr(keys.WAREHOUSES_VERSION_KEY)
        await self.reload()

    async def find(self, warehouse_id: str) -> Warehouse | None:
        """A warehouse by ID, looking again in MongoDB before saying it does not exist (it may
        have been created moments ago through another worker)."""
        warehouse = self.directory.get(warehouse_id)
        if warehouse is None:
            warehouse = (await self.reload()).get(warehouse_id)
        return warehouse
