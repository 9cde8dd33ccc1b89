"""Locust swarm against the order API: Zipf-popular products, customers around French cities.

    locust -f loadtest/locustfile.py --host http://127.0.0.1:8000 --headless -u 200 -r 50 \
        -t 60s --csv loadtest/results/run
    FLASH_SALE=1 ...        every order on one product (loadtest.catalog.FLASH_PRODUCT)
    PRODUCTS=100000 ...     catalogue size (seed it first: python -m loadtest.seed)
    API_KEY=... ...         sent as X-API-Key (a key with the `orders` scope; see README, Security)

Distributed: one `--master` and any number of `--worker --master-host=<host>` processes, each
worker a core; every worker draws its own traffic from the same distribution. `python -m
loadtest.swarm` runs one master and N workers on this machine. With --csv, the master also
writes `<prefix>_workers.csv`: the requests and failures each worker reported.
"""

from __future__ import annotations

import collections
import os
import uuid
from pathlib import Path
from typing import Any

from locust import FastHttpUser, between, events, task
from locust.env import Environment
from locust.runners import MasterRunner

from loadtest.catalog import Traffic
from loadtest.swarm import WORKERS_CSV_SUFFIX

PRODUCTS = int(os.environ.get("PRODUCTS", "10000"))
FLASH_SALE = os.environ.get("FLASH_SALE", "0") == "1"
THINK_TIME_S = float(os.environ.get("THINK_TIME_S", "0"))
API_KEY = os.environ.get("API_KEY", "")


class Storefront(FastHttpUser):
    """A storefront backend: mostly places orders, sometimes checks stock or an order."""

    wait_time = between(0, THINK_TIME_S)

    def on_start(self) -> None:
        self.traffic = Traffic(PRODUCTS, flash_sale=FLASH_SALE)
        self.last_order: str | None = None
        self.key = {"X-API-Key": API_KEY} if API_KEY else {}

    @task(20)
    def place_order(self) -> None:
        headers = {"Idempotency-Key": uuid.uuid4().hex, **self.key}
        with self.client.post(
            "/orders", json=self.traffic.order_body(), headers=headers, catch_response=True
        ) as response:
            if response.status_code == 201:
                self.last_order = response.json()["orderId"]
                response.success()
            elif response.status_code == 409:  # sold out is an answer, not a failure
                response.success()
            else:
                response.failure(f"POST /orders answered {response.status_code}")

    @task(3)
    def check_stock(self) -> None:
        self.client.get(
            "/inventory",
            params={"productId": self.traffic.product()},
            headers=self.key,
            name="/inventory",
        )

    @task(1)
    def follow_order(self) -> None:
        if self.last_order:
            self.client.get(
                f"/orders/{self.last_order}", headers=self.key, name="/orders/{orderId}"
            )


# On the master: what each worker reported (every report holds the requests since the last).
reported: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)


def count_worker_report(client_id: str, data: dict[str, Any], **_: object) -> None:
    total = data["stats_total"]
    reported[client_id].update(requests=total["num_requests"], failures=total["num_failures"])


def write_worker_counts(environment: Environment, **_: object) -> None:
    options = environment.parsed_options
    prefix = options.csv_prefix if options is not None else None
    if not prefix or not isinstance(environment.runner, MasterRunner):
        return
    rows = ["worker,requests,failures"]
    rows += [f"{w},{n['requests']},{n['failures']}" for w, n in sorted(reported.items())]
    Path(prefix + WORKERS_CSV_SUFFIX).write_text("\n".join(rows) + "\n")


# Registered by call, not as decorators: Locust's EventHook.add_listener has no annotations.
events.worker_report.add_listener(count_worker_report)  # type: ignore[no-untyped-call]
events.quitting.add_listener(write_worker_counts)  # type: ignore[no-untyped-call]
