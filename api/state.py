"""What one API worker holds for its lifetime: store clients, the order placer, the warehouse
directory, the live stock feed.

Warehouses live in MongoDB (stores/warehouses.py); each worker keeps them in memory to rank them
per order, and polls the set's version in Redis, so all workers see a new warehouse within
DIRECTORY_POLL_S (and at once when the engine meets stock at a warehouse it does not know).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Final

import asyncpg
from pymongo import AsyncMongoClient

from api.stock_feed import StockFeed
from engine import scripts
from engine.basket_reroute import ShipmentRerouter
from engine.baskets import BASKET_HOLD_TTL_S, BasketPlacer, PartHolder
from engine.inventory import Inventory
from engine.live_baskets import LiveBaskets
from engine.live_orders import LiveOrders
from engine.placement import OrderPlacer
from engine.stock_changes import LowStockThresholds, parse_overrides
from notify.jobs import Notices
from stores.breaker import Breaker, CircuitOpen
from stores.mongo import MongoDatabase, connect_mongo
from stores.order_archive import OrderArchive
from stores.postgres import connect_postgres
from stores.redis import RedisClient, connect_redis, connect_sync_redis
from stores.settings import Settings
from stores.tasks import cancel_and_wait
from stores.warehouses import WarehouseRepository

DIRECTORY_POLL_S: Final = 1.0
log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    redis: RedisClient
    mongo_client: AsyncMongoClient[dict[str, Any]]
    mongo: MongoDatabase
    postgres: asyncpg.Pool
    order_placer: OrderPlacer
    baskets: BasketPlacer
    live_baskets: LiveBaskets
    shipment_rerouter: ShipmentRerouter
    warehouses: WarehouseRepository
    inventory: Inventory
    live_orders: LiveOrders
    archive: OrderArchive
    notices: Notices
    stock_feed: StockFeed
    # Open after consecutive failures: reads that can do without the store answer at once.
    postgres_breaker: Breaker = field(default_factory=lambda: Breaker("postgres"))
    mongo_breaker: Breaker = field(default_factory=lambda: Breaker("mongo"))


@contextlib.asynccontextmanager
async def open_services(settings: Settings, *, batched: bool = True) -> AsyncIterator[Services]:
    redis = connect_redis(settings)
    notice_redis = connect_sync_redis(settings)  # rq is blocking: used from a thread
    mongo_client, mongo = connect_mongo(settings)
    postgres = await connect_postgres(settings)
    try:
        await scripts.load_all(redis)
        mongo_breaker = Breaker("mongo")
        warehouses = WarehouseRepository(redis, mongo, mongo_breaker)
        await warehouses.reload()
        runner = scripts.script_runner(redis, settings)
        archive = OrderArchive(postgres)
        live_orders = LiveOrders(runner, archive)
        live_baskets = LiveBaskets(runner, archive)
        services = Services(
            settings=settings,
            redis=redis,
            mongo_client=mongo_client,
            mongo=mongo,
            postgres=postgres,
            order_placer=OrderPlacer(
                runner,
                warehouses,
                orders=live_orders,
                batched=batched,
                idempotency_ttl_s=settings.idempotency_ttl_s,
            ),
            baskets=BasketPlacer(
                runner,
                warehouses,
                live_baskets.get,
                idempotency_ttl_s=settings.idempotency_ttl_s,
            ),
            live_baskets=live_baskets,
            shipment_rerouter=ShipmentRerouter(
                PartHolder(runner, warehouses, BASKET_HOLD_TTL_S), live_baskets
            ),
            warehouses=warehouses,
            inventory=Inventory(runner),
            live_orders=live_orders,
            archive=archive,
            notices=Notices(notice_redis),
            stock_feed=StockFeed(
                redis,
                LowStockThresholds(
                    settings.low_stock_threshold, parse_overrides(settings.low_stock_thresholds)
                ),
            ),
            mongo_breaker=mongo_breaker,
        )
        poller = asyncio.create_task(_poll_directory(warehouses))
        try:
            yield services
        finally:
            await services.stock_feed.stop()
            await cancel_and_wait(poller)
            await runner.aclose()
    finally:
        await postgres.close()
        await mongo_client.close()
        await redis.aclose()
        notice_redis.close()


async def _poll_directory(warehouses: WarehouseRepository) -> None:
    while True:
        await asyncio.sleep(DIRECTORY_POLL_S)
        try:
            await warehouses.reload_if_changed()
        except CircuitOpen:  # MongoDB is down: the known set stands, the next tick retries
            pass
        except Exception:  # a store blip must not kill the poller; the next tick retries
            log.warning("warehouse directory refresh failed", exc_info=True)
