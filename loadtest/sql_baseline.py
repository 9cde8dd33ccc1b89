"""The usual approach, measured for comparison: one SQL transaction per order (decrement the stock
row if enough is left, insert the order), driven by pgbench with 32 clients."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
from typing import Final
from urllib.parse import urlsplit

import asyncpg

from stores.settings import load_settings

CLIENTS: Final = 32
PRODUCTS: Final = 10_000
WAREHOUSES: Final = 8

SCHEMA: Final = """
DROP TABLE IF EXISTS bench_stock, bench_orders;
CREATE TABLE bench_stock (product_id int, warehouse_id int, available int NOT NULL,
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
UPDATE bench_stock SET available = available - 1
 WHERE product_id = :p AND warehouse_id = :w AND available >= 1;
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


async def run_sql_baseline(*, flash_sale: bool, seconds: int) -> float:
    """Orders/s of the one-transaction-per-order approach on the stack's PostgreSQL."""
    dsn = load_settings().postgres_dsn.rsplit("/", 1)[0] + "/fulfillment_bench"
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(SCHEMA.format(products=PRODUCTS, warehouses=WAREHOUSES))
    finally:
        await conn.close()
    product = "1" if flash_sale else f"random(1, {PRODUCTS})"
    url = urlsplit(dsn)
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as script:
        script.write(TRANSACTION.format(product=product, warehouses=WAREHOUSES))
        script.flush()
        done = subprocess.run(
            [
                _pgbench(),
                "-n",
                "-c",
                str(CLIENTS),
                "-j",
                "2",
                "-T",
                str(seconds),
                "-f",
                script.name,
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
    match = re.search(r"tps = ([0-9.]+)", done.stdout)
    if match is None:
        raise RuntimeError(f"no tps in pgbench output: {done.stdout[-500:]}")
    return float(match.group(1))
