"""Warehouse service: manage warehouses (id, name, location); MongoDB is their system of record."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.params import JSONBody

from api.state import Services
from api.types import ONE_LINE, AnyIdPath, Injected, Location, WarehouseId
from engine.errors import UnknownWarehouse
from engine.warehouses import Warehouse
from geo.distance import Point

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=ONE_LINE)]


class NewWarehouse(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    warehouse_id: WarehouseId
    name: Name
    location: Location


class WarehouseOut(msgspec.Struct, rename="camel"):
    warehouse_id: str
    name: str
    location: Location

    @classmethod
    def of(cls, warehouse: Warehouse) -> WarehouseOut:
        lat, lon = warehouse.location
        return cls(warehouse.warehouse_id, warehouse.name, Location(lat, lon))


class WarehouseController(Controller):
    path = "/warehouses"
    tags = ("warehouses",)

    @post("/", status_code=201)
    async def create(
        self, services: Injected[Services], data: JSONBody[NewWarehouse]
    ) -> WarehouseOut:
        location = Point(data.location.lat, data.location.lon)
        await services.warehouses.add(Warehouse(data.warehouse_id, data.name, location))
        return WarehouseOut(data.warehouse_id, data.name, data.location)

    @get("/")
    async def list_all(self, services: Injected[Services]) -> list[WarehouseOut]:
        return [WarehouseOut.of(w) for w in services.warehouses.directory.all()]

    @get("/{warehouse_id:str}")
    async def read(self, services: Injected[Services], warehouse_id: AnyIdPath) -> WarehouseOut:
        warehouse = await services.warehouses.find(warehouse_id)
        if warehouse is None:
            raise UnknownWarehouse(warehouse_id)
        return WarehouseOut.of(warehouse)
