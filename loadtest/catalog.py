"""The load-test world: warehouses over France, a Zipf-popular product catalogue, customers
clustered around cities. Shared by the locustfile and the benchmark so both hit the same data."""

from __future__ import annotations

import bisect
import itertools
import random
from typing import Final

from engine.warehouses import Warehouse
from geo.distance import Point

WAREHOUSES: Final = {
    "paris": ("Paris Nord", 48.95, 2.45),
    "lyon": ("Lyon Saint-Exupery", 45.72, 5.08),
    "lille": ("Lille Lesquin", 50.57, 3.10),
    "bordeaux": ("Bordeaux Merignac", 44.83, -0.70),
    "marseille": ("Marseille Vitrolles", 43.44, 5.25),
    "strasbourg": ("Strasbourg Entzheim", 48.54, 7.63),
    "nantes": ("Nantes Carquefou", 47.29, -1.49),
    "toulouse": ("Toulouse Blagnac", 43.63, 1.37),
}
CITIES: Final = [
    (48.86, 2.35, 10.0),  # lat, lon, relative population
    (45.76, 4.84, 2.3),
    (43.30, 5.37, 1.9),
    (44.84, -0.58, 1.3),
    (50.63, 3.06, 1.2),
    (47.22, -1.55, 1.0),
    (43.60, 1.44, 1.4),
    (48.58, 7.75, 0.8),
    (49.44, 1.10, 0.7),
    (47.32, 5.04, 0.4),
]
FLASH_PRODUCT: Final = "flash-0001"
ZIPF_EXPONENT: Final = 1.07


def warehouses() -> list[Warehouse]:
    """WAREHOUSES as the engine knows them."""
    return [Warehouse(w, name, Point(lat, lon)) for w, (name, lat, lon) in WAREHOUSES.items()]


def product_id(rank: int) -> str:
    return f"sku-{rank:07d}"


class Traffic:
    """Draws orders: a product by Zipf popularity (or the flash-sale product) and a customer."""

    def __init__(self, products: int, *, flash_sale: bool = False, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self._flash_sale = flash_sale
        weights = (1 / (rank**ZIPF_EXPONENT) for rank in range(1, products + 1))
        self._product_cdf = list(itertools.accumulate(weights))
        self._city_cdf = list(itertools.accumulate(c[2] for c in CITIES))

    def product(self) -> str:
        if self._flash_sale:
            return FLASH_PRODUCT
        u = self._rng.random() * self._product_cdf[-1]
        return product_id(bisect.bisect_left(self._product_cdf, u))

    def customer(self) -> tuple[float, float]:
        u = self._rng.random() * self._city_cdf[-1]
        lat, lon, _ = CITIES[bisect.bisect_left(self._city_cdf, u)]
        return lat + self._rng.gauss(0, 0.15), lon + self._rng.gauss(0, 0.2)

    def quantity(self) -> int:
        return 1 if self._rng.random() < 0.8 else self._rng.randint(2, 4)

    def order_body(self) -> dict[str, object]:
        lat, lon = self.customer()
        return {
            "productId": self.product(),
            "quantity": self.quantity(),
            "customerLocation": {"lat": round(lat, 5), "lon": round(lon, 5)},
        }

    def basket_body(self, lines: int) -> dict[str, object]:
        """A basket of `lines` distinct products, each drawn by popularity as a single order's
        (a product drawn twice is drawn again: the API takes each product once)."""
        if self._flash_sale or lines > len(self._product_cdf):
            raise ValueError(f"cannot draw {lines} distinct products from this catalogue")
        products: dict[str, None] = {}
        while len(products) < lines:
            products[self.product()] = None
        lat, lon = self.customer()
        return {
            "items": [{"productId": p, "quantity": self.quantity()} for p in products],
            "customerLocation": {"lat": round(lat, 5), "lon": round(lon, 5)},
        }
