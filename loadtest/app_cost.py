"""The API's own CPU per order, apart from the HTTP server: the app (`api.app`) called straight
through ASGI by concurrent callers, placing the benchmark's spread orders in a Redis of its own.

A diagnostic for the request path, not a figure the targets use: production runs behind uvicorn,
whose share the benchmark's API rows include, and that share moves with the machine's load and the
batches the load makes. This one holds still enough to tell whether a change made the Python path
cheaper (README, "Where the API's time goes"): run it on the old and on the new code, alternating.

    python -m loadtest.app_cost [--orders N] [--callers C] [--runs R]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any, Final

import uvloop

from api.app import create_app
from loadtest import bench, processes
from loadtest.catalog import Traffic
from stores.settings import Settings

APP_COST_REDIS_PORT: Final = 6406
APP_COST_DATABASE: Final = "fulfillment_app_cost"
CALLERS: Final = 64  # as many as wrk's connections in the benchmark
WARMUP_ORDERS: Final = 3_200


class AppDriver:
    """One app with its lifespan started, called as a server would call it."""

    def __init__(self, settings: Settings) -> None:
        self._app = create_app(settings)
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._lifespan: asyncio.Task[None] | None = None
        self.statuses: Counter[int] = Counter()

    async def __aenter__(self) -> AppDriver:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self._lifespan = asyncio.ensure_future(
            self._app(scope, self._events.get, self._answers.put)  # type: ignore[arg-type]
        )
        await self._events.put({"type": "lifespan.startup"})
        answer = await self._answers.get()
        if answer["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"the app did not start: {answer}")
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._events.put({"type": "lifespan.shutdown"})
        await self._answers.get()
        if self._lifespan is not None:
            await self._lifespan

    async def post_order(self, body: bytes) -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/orders",
            "raw_path": b"/orders",
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"127.0.0.1"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.statuses[message["status"]] += 1

        await self._app(scope, receive, send)  # type: ignore[arg-type]

    async def place(self, bodies: list[bytes], orders: int, callers: int) -> None:
        """`orders` orders, `callers` at a time, each caller waiting for its answer."""

        async def caller(first: int) -> None:
            for i in range(first, orders, callers):
                await self.post_order(bodies[i % len(bodies)])

        await asyncio.gather(*(caller(k) for k in range(callers)))


async def measure(orders: int, callers: int, runs: int) -> list[float]:
    """CPU microseconds of this process per order, one figure per run."""
    figures: list[float] = []
    with processes.redis_server(APP_COST_REDIS_PORT, persistent=True) as redis_url:
        settings = bench.bench_settings(redis_url, APP_COST_DATABASE)
        await bench.prepare_stores(settings)
        path = bench.write_bodies(processes.BENCH_DIR / "app-cost.jsonl", Traffic(bench.PRODUCTS))
        bodies = _lines(path)
        async with AppDriver(settings) as driver:
            await driver.place(bodies, WARMUP_ORDERS, callers)
            for _ in range(runs):
                driver.statuses.clear()
                started = time.process_time()
                await driver.place(bodies, orders, callers)
                figures.append((time.process_time() - started) / orders * 1e6)
                if driver.statuses != Counter({201: orders}):
                    raise RuntimeError(f"not every order was placed: {dict(driver.statuses)}")
    return figures


def _lines(path: Path) -> list[bytes]:
    return [line.strip().encode() for line in path.read_text().splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=40_000, help="orders per run")
    parser.add_argument("--callers", type=int, default=CALLERS)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    # The event loop the API's workers run (python -m api).
    figures = uvloop.run(measure(args.orders, args.callers, args.runs))
    runs = ", ".join(f"{us:.1f}" for us in figures)
    print(f"CPU per order: median {statistics.median(figures):.1f} us (runs: {runs})")


if __name__ == "__main__":
    main()
