"""The MongoDB connection (PyMongo's async API) and the collections the system owns.

`warehouses`: one document per warehouse, `_id` = warehouseId, with name, lat, lon.
`inventory`: one document per product, `_id` = productId, with `stockLevels`
([{warehouseId, quantity}]) and `version`: how many entries the product's partition stream had
when the stock was read (lua/read_stock.lua), which orders the states it mirrors.
"""

from __future__ import annotations

from typing import Any, Final

from pymongo import AsyncMongoClient
from pymongo import errors as mongo_errors
from pymongo.asynchronous.database import AsyncDatabase

from stores.settings import Settings

WAREHOUSES: Final = "warehouses"
INVENTORY: Final = "inventory"
SERVER_SELECTION_TIMEOUT_MS: Final = 5_000
# MongoDB unreachable, electing, or timing out: the store's trouble, not the caller's. The one
# list for every caller (the API's breaker, the inventory writer's retries).
TRANSIENT_ERRORS: Final[tuple[type[BaseException], ...]] = (
    # includes AutoReconnect, NetworkTimeout, NotPrimaryError and ServerSelectionTimeoutError
    mongo_errors.ConnectionFailure,
    mongo_errors.ExecutionTimeout,
    mongo_errors.WTimeoutError,  # a write concern not met in time: the write may still land
)

MongoDatabase = AsyncDatabase[dict[str, Any]]


def connect_mongo(settings: Settings) -> tuple[AsyncMongoClient[dict[str, Any]], MongoDatabase]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        settings.mongo_url, serverSelectionTimeoutMS=SERVER_SELECTION_TIMEOUT_MS
    )
    return client, client[settings.mongo_db]
