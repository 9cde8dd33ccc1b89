"""Locust swarm against the order API: Zipf-popular products, customers around French cities.

    locust -f loadtest/locustfile.py --host http://127.0.0.1:8000 --headless -u 200 -r 50 \
        -t 60s --csv loadtest/results/run
    FLASH_SALE=1 ...        every order on one product (loadtest.catalog.FLASH_PRODUCT)
    PRODUCTS=100000 ...     catalogue size (seed it first: python -m loadtest.seed)

Distributed: one `--master` and any number of `--worker --master-host=<host>` processes, each
worker a core; every worker draws its own traffic from the same distribution.
"""

from __future__ import annotations

import os
import uuid

from locust import FastHttpUser, between, task

from loadtest.catalog import Traffic

PRODUCTS = int(os.environ.get("PRODUCTS", "10000"))
FLASH_SALE = os.environ.get("FLASH_SALE", "0") == "1"
THINK_TIME_S = float(os.environ.get("THINK_TIME_S", "0"))


class Storefront(FastHttpUser):
    """A storefront backend: mostly places orders, sometimes checks stock or an order."""

    wait_time = between(0, THINK_TIME_S)

    def on_start(self) -> None:
        self.traffic = Traffic(PRODUCTS, flash_sale=FLASH_SALE)
        self.last_order: str | None = None

    @task(20)
    def place_order(self) -> None:
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        with self.client.post(
            "/orders", json=self.traffic.order_body(), headers=headers, catch_response=True
        ) as response:
            if response.status_code == 201:
                self.last_order = response.json()["orderId"]
                response.success()
            elif response.status_code == 409:  # sold out is an answer, not a failure
                response.success()

    @task(3)
    def check_stock(self) -> None:
        self.client.get(
            "/inventory", params={"productId": self.traffic.product()}, name="/inventory"
        )

    @task(1)
    def follow_order(self) -> None:
        if self.last_order:
            self.client.get(f"/orders/{self.last_order}", name="/orders/{orderId}")
