"""The shop the basket tests and their worker process share: warehouses around Paris and products
spread over several partitions."""

from __future__ import annotations

from engine.warehouses import Warehouse
from geo.distance import Point

PARIS = Point(48.8566, 2.3522)
WAREHOUSES = [
    Warehouse("paris", "Paris", PARIS),
    Warehouse("lyon", "Lyon", Point(45.7640, 4.8357)),
    Warehouse("lille", "Lille", Point(50.6292, 3.0573)),
    Warehouse("madrid", "Madrid", Point(40.4168, -3.7038)),
]
# Products in at least 3 partitions, so a basket spans hash slots.
PRODUCTS = [f"sku-{i}" for i in range(8)]
