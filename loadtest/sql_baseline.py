"""The usual approach, measured for comparison: one SQL transaction per order (decrement the stock
row if enough is left, insert the order), driven by pgbench with 32 clients, as fast as it goes
or at a fixed rate (-R)."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import asyncpg

from loadtest.stock_watch import percentile
from stores.settings import load_settings

CLIENTS: Final = 32
PRODUCTS: Final = 10_000
WAREHOUSES: Final = 8

SCHEMA: Final = """
DROP TABLE IF EXISTS bench_stock, bench_orders;
CREATE TABLE bench_stock (product_id int, warehouse_id int, level int NOT NULL,
                          PRIMARY KEY (product_id, warehouse_id));
CREATE TABLE bench_orders (order_id uuid PRIMARY KEY DEFAULT gen_random_uuid(), product_id int,
                           warehouse_id int, quantity int, created_at timestamptz DEFAULT now());
INSERT INTO bench_stock SELECT p, w, 1000000000 FROM generate_series(1, {products}) p,
                                                    generate_series(1, {warehouses}) w;
ANALYZE bench_stock;
"""

TRANSACTION: Final = """\\set p {product}
\\set w random(1, {warehouses})
BEGIN;
UPDATE bench_stock SET level = level - 1
 WHERE product_id = :p AND warehouse_id = :w AND level >= 1;
INSERT INTO bench_orders (product_id, warehouse_id, quantity) VALUES (:p, :w, 1);
END;
"""


def _pgbench() -> str:
    found = shutil.which("pgbench") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"), reverse=True)), None
    )
    if found is None:
        raise RuntimeError("pgbench not found (it comes with Debian's postgresql package)")
    return found


@dataclass(frozen=True)
class SqlRun:
    per_s: float  # orders (transactions) per second
    # By percentile (50, 99, 99.9), from pgbench's log of every transaction; with a rate, counted
    # from each transaction's scheduled start, so a queue is charged to the server.
    latency_ms: dict[float, float]


async def run_sql_baseline(*, flash_sale: bool, seconds: int, rate: float = 0) -> SqlRun:
    """The one-transaction-per-order approach on the stack's PostgreSQL, as fast as it goes or,
    with `rate`, at that many orders/s."""
    dsn = load_settings().postgres_dsn.rsplit("/", 1)[0] + "/fulfillment_bench"
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(SCHEMA.format(products=PRODUCTS, warehouses=WAREHOUSES))
    finally:
        await conn.close()
    product = "1" if flash_sale else f"random(1, {PRODUCTS})"
    url = urlsplit(dsn)
    with tempfile.TemporaryDirectory() as work:
        script = Path(work) / "order.sql"
        script.write_text(TRANSACTION.format(product=product, warehouses=WAREHOUSES))
        done = subprocess.run(
            [
                _pgbench(),
                *(["-R", str(rate)] if rate else []),
                "-l",
                f"--log-prefix={work}/log",
                "-n",
                "-c",
                str(CLIENTS),
                "-j",
                "2",
                "-T",
                str(seconds),
                "-f",
                str(script),
                "-h",
                url.hostname or "127.0.0.1",
                "-p",
                str(url.port or 5432),
                "-U",
                url.username or "fulfillment",
                url.path.lstrip("/"),
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PGPASSWORD": url.password or ""},
        )
        latencies_ms = _logged_latencies_ms(Path(work))
    match = re.search(r"tps = ([0-9.]+)", done.stdout)
    if match is None:
        raise RuntimeError(f"no tps in pgbench output: {done.stdout[-500:]}")
    return SqlRun(float(match.group(1)), {p: percentile(latencies_ms, p) for p in (50, 99, 99.9)})


def _logged_latencies_ms(work: Path) -> list[float]:
    """The third field of each line of pgbench's logs (one per thread): the transaction's
    latency in microseconds, or `failed`."""
    latencies = []
    for log in work.glob("log.*"):
        for line in log.read_text().splitlines():
            latency_us = line.split()[2]
            if latency_us.isdigit():
                latencies.append(int(latency_us) / 1000)
    return latencies
