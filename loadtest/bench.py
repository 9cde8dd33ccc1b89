"""The benchmark: every target of the brief measured in one run on this machine, each beside its
reference so the ratio holds on a noisy machine. Prints a table and writes BENCHMARKS.md.

    python -m loadtest.bench                (~19 min, of which the soak ~13)
    python -m loadtest.bench --quick        (~8 min: shorter runs, 200k products for memory,
                                             a 3-minute soak)
    python -m loadtest.bench --parts soak   (one part; its rows and sections replace theirs in
                                             BENCHMARKS.md, the rest of the file stays)

It starts its own Redis servers (AOF everysec like the stack), API workers, writers and a Redis
Cluster on loopback, and uses the stack's PostgreSQL and MongoDB under `*_bench` databases (the
soak under `fulfillment_soak`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import asyncpg

from engine import keys, scripts
from engine.inventory import Inventory
from engine.warehouses import Warehouse, WarehouseDirectory
from geo.rings import Point
from loadtest import engine_load, processes, soak
from loadtest.catalog import FLASH_PRODUCT, WAREHOUSES, Traffic, product_id
from loadtest.cluster import cluster_scaling
from loadtest.memory import measure_key_costs, measure_memory
from loadtest.sql_baseline import run_sql_baseline
from loadtest.stock_watch import percentile, watch_stock
from stores.mongo import WAREHOUSES as WAREHOUSE_COLLECTION
from stores.mongo import connect_mongo
from stores.postgres import apply_schema, connect_postgres
from stores.redis import connect_redis
from stores.settings import Settings, load_settings
from writers import writer_backlog
from writers.inventory import INVENTORY_GROUP
from writers.orders import ORDERS_GROUP

REPORT: Final = processes.ROOT / "BENCHMARKS.md"
SOAK_PLOT: Final = processes.ROOT / "BENCHMARKS-soak.png"
BENCH_REDIS_PORT: Final = 6400
ENGINE_REDIS_PORT: Final = 6402
SOAK_REDIS_PORT: Final = 6403
SOAK_QUEUE_REDIS_PORT: Final = 6404
API_PORT: Final = 8400
NOOP_PORT: Final = 8401
SOAK_API_PORT: Final = 8402
BENCH_DATABASE: Final = "fulfillment_bench"
SOAK_DATABASE: Final = "fulfillment_soak"
CLUSTER_PORTS: Final = (7100, 7101, 7102)
PRODUCTS: Final = 10_000
UNITS: Final = 10**9  # per product and warehouse: no run sells out
WRK_CONNECTIONS: Final = 64
WARMUP_S: Final = 2
LATENCY_WARMUP_S: Final = 6
TARGET_ORDERS_PER_S: Final = 100_000
READING: Final = (
    "What the figures mean, where each missed target's time goes and what would close it: "
    "README.md, section Performance and scaling."
)
PARTS: Final = ("engine", "api", "writers", "sql", "memory", "cluster", "soak")
SOAK_S: Final = 600
SOAK_QUICK_S: Final = 180
# The shortest hot window the orders writer accepts (engine.orders.ORDER_FINAL_LINGER_S); the
# idempotency keys get the same TTL, so both kinds of state turn over within the soak.
SOAK_WINDOW_S: Final = 60
# Fixed, not a share of the API's peak: on 2 cores the API beside the writers, the stores and the
# driver takes ~1,000 orders/s at most (alone it peaks at ~4,600), and FerretDB's mirror trails
# further (README, The MongoDB mirror).
SOAK_DEFAULT_RATE: Final = 500
# The soak's orders go to the 1,000 most popular products: the inventory writer costs one FerretDB
# write per distinct product per batch, and over 10,000 products FerretDB (~75-1,400 writes/s
# here, with the machine shared) makes its batches last minutes, so the streams would measure
# FerretDB, not the hot window (README, The MongoDB mirror).
SOAK_PRODUCTS: Final = 1_000
SOAK_DRAIN_TIMEOUT_S: Final = 300


@dataclass
class Row:
    what: str
    measured: str
    reference: str = ""
    target: str = ""
    verdict: str = ""


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(f"  {row.what}: {row.measured}  {row.reference}  {row.verdict}", flush=True)


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


# --- setup ---


def bench_settings(redis_url: str, database: str = BENCH_DATABASE) -> Settings:
    base = load_settings()
    dsn = base.postgres_dsn.rsplit("/", 1)[0] + f"/{database}"
    return Settings(redis_url, False, dsn, base.mongo_url, database)


def bench_env(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        "REDIS_URL": settings.redis_url,
        "REDIS_CLUSTER": "0",
        "POSTGRES_DSN": settings.postgres_dsn,
        "MONGO_URL": settings.mongo_url,
        "MONGO_DB": settings.mongo_db,
        **extra,
    }


async def prepare_stores(settings: Settings) -> WarehouseDirectory:
    """The settings' PostgreSQL database (created if missing) and MongoDB database emptied, the
    warehouses written, every product stocked in the settings' Redis."""
    database = settings.mongo_db  # bench_settings names both databases alike
    admin = await asyncpg.connect(load_settings().postgres_dsn)
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    pool = await connect_postgres(settings)
    await apply_schema(pool)
    await pool.execute("TRUNCATE orders, order_status_history, duplicate_orders")
    await pool.close()
    client, mongo = connect_mongo(settings)
    await mongo.drop_collection("inventory")
    await mongo.drop_collection(WAREHOUSE_COLLECTION)
    warehouses = [Warehouse(w, name, Point(lat, lon)) for w, (name, lat, lon) in WAREHOUSES.items()]
    await mongo[WAREHOUSE_COLLECTION].insert_many(
        [
            {"_id": w.warehouse_id, "name": w.name, "lat": w.location.lat, "lon": w.location.lon}
            for w in warehouses
        ]
    )
    await client.close()
    await seed_stock(settings.redis_url, warehouses)
    return WarehouseDirectory(warehouses)


async def seed_stock(redis_url: str, warehouses: list[Warehouse]) -> None:
    """Scripts loaded and every product stocked at every warehouse, through lua/set_stock.lua."""
    redis = connect_redis(Settings(redis_url, False, "", "", ""))
    await scripts.load_all(redis)
    await redis.incr(keys.WAREHOUSES_VERSION_KEY)
    inventory = Inventory(
        scripts.ScriptRunner(redis, deadline_s=load_settings().command_deadline_s)
    )
    levels = [
        (product, w.warehouse_id, UNITS)
        for product in [FLASH_PRODUCT, *(product_id(r) for r in range(PRODUCTS))]
        for w in warehouses
    ]
    for start in range(0, len(levels), 5_000):
        await inventory.set_many(levels[start : start + 5_000], "bench seed")
    await redis.aclose()


def write_bodies(path: Path, traffic: Traffic, count: int = 100_000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for _ in range(count):
            out.write(json.dumps(traffic.order_body()) + "\n")
    return path


# --- load drivers ---


async def wrk(url: str, bodies: Path, seconds: int) -> dict[str, Any]:
    """Closed-loop peak: wrk, 1 thread, 64 connections (the brief's reference setup)."""
    script = processes.ROOT / "loadtest" / "wrk_post.lua"
    proc = await asyncio.create_subprocess_exec(
        "wrk",
        "-t1",
        f"-c{WRK_CONNECTIONS}",
        f"-d{seconds}s",
        "-s",
        str(script),
        url,
        env={**os.environ, "BODIES": str(bodies)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await proc.communicate()
    last = out.decode().strip().splitlines()[-1] if out else ""
    if proc.returncode != 0 or not last.startswith("{"):
        raise RuntimeError(f"wrk failed: {out.decode()[-500:]} {err.decode()[-500:]}")
    return dict(json.loads(last))


def build_ratedriver() -> Path:
    binary = processes.BENCH_DIR / "ratedriver"
    subprocess.run(
        ["go", "build", "-o", str(binary), "."],
        check=True,
        cwd=processes.ROOT / "loadtest" / "ratedriver",
        env={**os.environ, "CGO_ENABLED": "0"},
    )
    return binary


def fixed_rate(
    binary: Path, url: str, bodies: Path, rate: float, seconds: int, idempotency_share: float = 0.0
) -> dict[str, Any]:
    """Open loop at a fixed rate; latency counted from each request's scheduled time. A share of
    the requests may carry an Idempotency-Key each (a new one per request)."""
    done = subprocess.run(
        [
            str(binary),
            "-url",
            url,
            "-bodies",
            str(bodies),
            "-rate",
            str(int(rate)),
            "-duration",
            f"{seconds}s",
            "-idempotency-share",
            str(idempotency_share),
        ],
        capture_output=True,
        check=True,
        text=True,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


async def api_peak(settings: Settings, bodies: Path, seconds: int, **env: str) -> dict[str, Any]:
    with processes.asgi_worker("api.app:app", API_PORT, bench_env(settings, **env)) as base:
        await wrk(f"{base}/orders", bodies, WARMUP_S)
        return await wrk(f"{base}/orders", bodies, seconds)


async def drain(settings: Settings, timeout_s: float) -> tuple[dict[str, float], int]:
    """Seconds until each writer group's backlog is zero (NaN past the timeout), and the largest
    total backlog seen."""
    redis = connect_redis(settings)
    started = time.perf_counter()
    done: dict[str, float] = {}
    largest = 0
    try:
        while time.perf_counter() - started < timeout_s:
            groups = await writer_backlog(redis)
            largest = max(largest, sum(g.lag + g.pending for g in groups))
            for group in groups:
                if group.lag + group.pending == 0:
                    done.setdefault(group.group, time.perf_counter() - started)
            if len(done) == len(groups):
                return done, largest
            await asyncio.sleep(0.1)
    finally:
        await redis.aclose()
    return {g: done.get(g, float("nan")) for g in (ORDERS_GROUP, INVENTORY_GROUP)}, largest


async def persisted_orders(settings: Settings) -> int:
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM orders"))
    finally:
        await conn.close()


# --- the measurements ---


async def measure_engine(results: Results, directory: WarehouseDirectory, quick: bool) -> None:
    """On a Redis of its own (AOF everysec, as the stack runs it): the ~1M orders it places would
    otherwise weigh on the API's Redis (memory, AOF rewrites) in the runs after it."""
    orders = 100_000 if quick else 300_000
    print("engine alone (lua/reserve.lua pipelined from one client, depth 32)", flush=True)
    with processes.redis_server(ENGINE_REDIS_PORT, persistent=True) as url:
        await seed_stock(
            url, [Warehouse(w.warehouse_id, w.name, w.location) for w in directory.all()]
        )
        await _measure_engine(results, directory, orders)


async def _measure_engine(results: Results, directory: WarehouseDirectory, orders: int) -> None:
    tiny = engine_load.tiny_decrement_load(orders)
    redis = connect_redis(Settings(f"redis://127.0.0.1:{ENGINE_REDIS_PORT}/0", False, "", "", ""))
    await redis.script_load(engine_load.TINY_DECREMENT)
    await redis.aclose()
    tiny_rate, _ = await engine_load.send_pipelined(ENGINE_REDIS_PORT, tiny, 32)
    results.figures["tiny_lua_per_s"] = tiny_rate
    results.add(
        Row(
            "Redis, tiny Lua decrement, pipeline depth 32",
            f"{tiny_rate:,.0f} /s",
            "brief's machine: ~500,000 /s",
        )
    )
    for per_call in (1, 8, 32):
        load = engine_load.reservation_load(
            directory, Traffic(PRODUCTS, seed=per_call), orders, per_call
        )
        rate, errors = await engine_load.send_pipelined(ENGINE_REDIS_PORT, load, 32)
        results.figures[f"engine_{per_call}_per_s"] = rate
        ratio = rate / tiny_rate
        results.add(
            Row(
                f"Engine: reservations/s, {per_call} order(s) per script call",
                f"{rate:,.0f} /s ({errors} errors)",
                f"{ratio:.2f}x the tiny script",
                ">= 100,000 /s (= 0.20x the brief's tiny-script figure)",
                verdict(rate >= 100_000 or ratio >= 0.20) if per_call == 32 else "",
            )
        )


async def measure_api(
    results: Results, settings: Settings, bodies: dict[str, Path], seconds: int
) -> None:
    print("API end to end, one granian worker, wrk -t1 -c64", flush=True)
    with processes.asgi_worker("loadtest.noop_app:app", NOOP_PORT, {}) as base:
        await wrk(f"{base}/orders", bodies["spread"], WARMUP_S)
        noop = await wrk(f"{base}/orders", bodies["spread"], seconds)
    spread = await api_peak(settings, bodies["spread"], seconds)
    results.figures["api_per_s"] = spread["rate"]
    # Right after the peak it is half of, while this Redis is still small (see measure_engine).
    await measure_latency(results, settings, bodies["spread"], seconds)
    flash = await api_peak(settings, bodies["flash"], seconds)
    single = await api_peak(settings, bodies["spread"], seconds, API_BATCHING="0")
    f = results.figures
    f.update(noop_per_s=noop["rate"], flash_per_s=flash["rate"], evalsha_per_s=single["rate"])
    results.add(
        Row(
            "No-op Litestar POST handler (reference)",
            f"{noop['rate']:,.0f} /s",
            "brief's machine: ~22,000 /s",
        )
    )
    results.add(
        Row(
            "API: confirmed orders/s per worker (spread traffic)",
            f"{spread['rate']:,.0f} /s, p50 {spread['p50_ms']:.1f} ms, "
            f"p99 {spread['p99_ms']:.1f} ms",
            f"{spread['rate'] / noop['rate']:.2f}x the no-op handler",
            ">= 15,000 /s (= 0.68x the brief's no-op figure)",
            verdict(spread["rate"] >= 15_000 or spread["rate"] / noop["rate"] >= 0.68),
        )
    )
    results.add(
        Row(
            "API with one EVALSHA per request (no micro-batching)",
            f"{single['rate']:,.0f} /s, p99 {single['p99_ms']:.1f} ms",
            f"batched API = {spread['rate'] / single['rate']:.2f}x this",
            ">= 1.5x",
            verdict(spread["rate"] / single["rate"] >= 1.5),
        )
    )
    results.add(
        Row(
            "Flash sale: every order on one product",
            f"{flash['rate']:,.0f} /s, p99 {flash['p99_ms']:.1f} ms",
            f"{flash['rate'] / spread['rate']:.0%} of spread",
            ">= 90% of spread",
            verdict(flash["rate"] / spread["rate"] >= 0.9),
        )
    )
    for run in (spread, flash, single):
        if run["errors"]:
            results.notes.append(f"wrk counted {run['errors']} errors/non-2xx in a run: {run}")


async def measure_latency(results: Results, settings: Settings, bodies: Path, seconds: int) -> None:
    """Orders at half the peak, open loop, on a warmed worker; then the same load while one client
    watches the live stock stream of the most popular product (its tailer decodes every event in
    the worker, so the two are measured apart)."""
    rate = results.figures["api_per_s"] / 2
    print(f"latency at half the peak ({rate:,.0f} orders/s, open loop)", flush=True)
    binary = build_ratedriver()
    delays_ms: list[float] = []
    with processes.asgi_worker("api.app:app", API_PORT, bench_env(settings)) as base:
        url = f"{base}/orders"
        # A new worker fills its ring cache and connection pools first: warm it as a server
        # that has been up a while would be.
        await asyncio.to_thread(fixed_rate, binary, url, bodies, rate, LATENCY_WARMUP_S)
        run = await asyncio.to_thread(fixed_rate, binary, url, bodies, rate, seconds)
        watcher = asyncio.create_task(watch_stock(base, product_id(0), delays_ms))
        await asyncio.to_thread(fixed_rate, binary, url, bodies, rate, WARMUP_S)
        delays_ms.clear()
        watched = await asyncio.to_thread(fixed_rate, binary, url, bodies, rate, seconds)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    p99 = run["latency_ms"]["p99"]
    results.figures["p99_half_ms"] = p99
    results.add(
        Row(
            "Latency at half the peak rate",
            f"p50 {run['latency_ms']['p50']:.2f} ms, p99 {p99:.2f} ms, "
            f"p99.9 {run['latency_ms']['p99.9']:.2f} ms "
            f"({run['achieved_rate']:,.0f} /s achieved, {run['dropped']} dropped)",
            "",
            "p99 < 10 ms",
            verdict(p99 < 10),
        )
    )
    stream_p99 = percentile(delays_ms, 99)
    results.add(
        Row(
            "Live stock stream: change appended in Redis -> SSE client, at half the peak",
            f"p50 {percentile(delays_ms, 50):.1f} ms, p99 {stream_p99:.1f} ms "
            f"({len(delays_ms):,} changes of the most popular product)",
            f"orders meanwhile: p99 {watched['latency_ms']['p99']:.1f} ms",
            "p99 < 100 ms",
            verdict(stream_p99 < 100),
        )
    )


async def measure_writers(results: Results, settings: Settings, bodies: Path, seconds: int) -> None:
    """One process per writer (each a core in production), started on the backlog the earlier
    runs left; then both beside the API, and the time the backlog takes to clear after it."""
    print("writers: drain the backlog the API runs left, then keep up under load", flush=True)
    before = await persisted_orders(settings)
    env = bench_env(settings)
    with processes.writers(env, "--only", "orders"), processes.writers(env, "--only", "inventory"):
        drained, backlog = await drain(settings, 900)
        orders = await persisted_orders(settings) - before
        for group, label in (
            (ORDERS_GROUP, "orders -> PostgreSQL"),
            (INVENTORY_GROUP, "inventory -> MongoDB (FerretDB)"),
        ):
            rate = orders / drained[group]
            results.figures[f"{group}_per_s"] = rate
            results.add(
                Row(
                    f"Writer {label}: sustained rate from a backlog (one process)",
                    f"{orders:,} orders in {drained[group]:.1f} s = {rate:,.0f} orders/s "
                    f"(backlog {backlog:,} entries in all)",
                    f"{rate / results.figures['api_per_s']:.2f}x the API's peak",
                    ">= the API's peak",
                    verdict(rate >= results.figures["api_per_s"]),
                )
            )
        with processes.asgi_worker("api.app:app", API_PORT, env) as base:
            run = await wrk(f"{base}/orders", bodies, seconds)
        after, left = await drain(settings, 900)
    slowest = max(after.values())
    results.add(
        Row(
            "Writers beside the API on the same 2 cores: backlog drain after load stops",
            f"{slowest:.1f} s (orders {after[ORDERS_GROUP]:.1f} s, inventory "
            f"{after[INVENTORY_GROUP]:.1f} s; {left:,} entries at stop; API {run['rate']:,.0f} /s)",
            "",
            "back to zero within seconds",
            verdict(slowest < 10),
        )
    )


async def measure_sql(results: Results, seconds: int) -> None:
    print("the usual approach: one SQL transaction per order, pgbench, 32 clients", flush=True)
    spread = await run_sql_baseline(flash_sale=False, seconds=seconds)
    flash = await run_sql_baseline(flash_sale=True, seconds=seconds)
    results.figures.update(sql_per_s=spread, sql_flash_per_s=flash)
    results.add(
        Row(
            "SQL baseline: one transaction per order, random products",
            f"{spread:,.0f} /s",
            "brief's machine: ~8,500 /s",
        )
    )
    results.add(
        Row(
            "SQL baseline, flash sale (one product)",
            f"{flash:,.0f} /s",
            f"{flash / spread:.0%} of its spread figure",
        )
    )
    engine = results.figures.get("engine_8_per_s")
    if engine:
        results.add(
            Row(
                "Decision point vs SQL baseline: one Redis core (8 orders/call) vs PostgreSQL",
                f"{engine / spread:.1f}x",
                f"flash sale: one product's orders all in one script call, vs "
                f"{flash:,.0f} /s for SQL",
                ">= 10x",
                verdict(engine / spread >= 10),
            )
        )
    api = results.figures.get("api_per_s")
    if not api:
        return
    results.add(
        Row(
            "API (1 worker) vs SQL baseline",
            f"{api / spread:.1f}x",
            f"flash sale: {results.figures['flash_per_s'] / flash:.1f}x",
            ">= 10x",
            verdict(api / spread >= 10),
        )
    )


async def measure_cluster(results: Results, directory: WarehouseDirectory, quick: bool) -> None:
    """Engine alone on 1 master, then on 3 masters at once (one client process per master)."""
    print("Redis Cluster: engine alone on one shard, then three", flush=True)
    one, three = await cluster_scaling(CLUSTER_PORTS, directory, 60_000 if quick else 150_000)
    results.figures.update(cluster_one_per_s=one, cluster_three_per_s=three)
    results.add(
        Row(
            "Redis Cluster, engine alone: 1 master / 3 masters at once",
            f"{one:,.0f} /s / {three:,.0f} /s",
            f"{three / one:.2f}x from 3x the shards",
            "",
            "",
        )
    )


async def measure_soak(results: Results, quick: bool, rate: float) -> list[str]:
    """Bounded state: orders at a fixed rate for SOAK_S into one API worker with the writers and
    sweeps beside it (`python -m writers`), hot window and idempotency TTL at SOAK_WINDOW_S, on a
    Redis of its own; sampled throughout, then the writers drain and the records leave."""
    seconds = SOAK_QUICK_S if quick else SOAK_S
    print(
        f"soak: {seconds // 60} min at {rate:,.0f} orders/s, ORDER_HOT_WINDOW_S={SOAK_WINDOW_S}",
        flush=True,
    )
    costs = await measure_key_costs()
    binary = build_ratedriver()
    bodies = write_bodies(processes.BENCH_DIR / "soak.jsonl", Traffic(SOAK_PRODUCTS, seed=5))
    samples: list[soak.Sample] = []
    with (
        processes.redis_server(SOAK_REDIS_PORT, persistent=True) as redis_url,
        processes.redis_server(SOAK_QUEUE_REDIS_PORT, persistent=False) as queue_url,
    ):
        settings = bench_settings(redis_url, SOAK_DATABASE)
        await prepare_stores(settings)
        env = bench_env(
            settings,
            ORDER_HOT_WINDOW_S=str(SOAK_WINDOW_S),
            IDEMPOTENCY_TTL_S=str(SOAK_WINDOW_S),
            QUEUE_REDIS_URL=queue_url,
        )
        redis = connect_redis(settings)
        queue = connect_redis(Settings(queue_url, False, "", "", ""))
        postgres = await asyncpg.connect(settings.postgres_dsn)
        try:
            probe = soak.Probe(redis, queue, postgres)
            # The seed's replies to its operations (kept OPERATION_TTL_S for resends) would leave
            # during the soak: gone now, so the empty baseline is stock and scripts alone.
            operations = [key async for key in redis.scan_iter(match="op:*", count=5_000)]
            for start in range(0, len(operations), 5_000):
                await redis.unlink(*operations[start : start + 5_000])
            with (
                processes.writers(env),
                processes.asgi_worker("api.app:app", SOAK_API_PORT, env) as base,
            ):
                # The writers first persist the seed's stock events, which are then trimmed.
                baseline = await soak.settle(probe, SOAK_DRAIN_TIMEOUT_S)
                started = time.monotonic()
                stop = asyncio.Event()
                sampler = asyncio.create_task(soak.sample_every(probe, started, stop, samples))
                try:
                    run = await asyncio.to_thread(
                        fixed_rate, binary, f"{base}/orders", bodies, rate, seconds, 1.0
                    )
                    load_s = time.monotonic() - started
                    print(f"soak: load stopped ({json.dumps(run)}); draining", flush=True)
                    drained, _ = await drain(settings, SOAK_DRAIN_TIMEOUT_S)
                    # Watch the last records leave: one hot window after they were persisted.
                    await asyncio.sleep(
                        max(0.0, load_s + SOAK_WINDOW_S + 15 - (time.monotonic() - started))
                    )
                finally:
                    stop.set()
                    await sampler
            persisted = await persisted_orders(settings)
            pg_bytes = await soak.postgres_bytes(postgres)
        finally:
            await postgres.close()
            await redis.aclose()
            await queue.aclose()
    confirmed = int(run["status_counts"].get("201", 0))
    result = soak.SoakResult(
        rate=rate,
        products=SOAK_PRODUCTS,
        load_s=load_s,
        window_s=SOAK_WINDOW_S,
        baseline_bytes=baseline.used_bytes,
        samples=samples,
        confirmed=confirmed,
        refused=int(run["sent"]) - confirmed,
        p99_ms=float(run["latency_ms"]["p99"]),
        persisted=persisted,
        drain_s=max(drained.values()),
        postgres=pg_bytes,
        costs=costs,
    )
    (processes.BENCH_DIR / "soak.csv").write_text(soak.samples_csv(samples))
    soak.plot(result, SOAK_PLOT)
    low, mean, high = result.memory
    results.figures.update(
        soak_rate=rate, soak_memory_mean=mean, soak_per_hot_order=result.per_hot_order()
    )
    results.add(
        Row(
            f"Soak: Redis memory once the hot window ({SOAK_WINDOW_S} s) has turned over; "
            "every confirmed order in PostgreSQL",
            f"{seconds // 60} min at {rate:,.0f} orders/s: {low / 2**20:,.1f} / "
            f"{mean / 2**20:,.1f} / {high / 2**20:,.1f} MiB (min / mean / max after "
            f"{soak.STEADY_AFTER_WINDOWS * SOAK_WINDOW_S} s); {persisted:,} of {confirmed:,} "
            f"confirmed orders in PostgreSQL ({result.refused:,} refused or unanswered)",
            f"{result.per_hot_order():,.0f} bytes per hot order; see Soak",
            f"within ±{soak.FLAT_TOLERANCE:.0%} of the mean; all persisted",
            verdict(result.flat and result.complete),
        )
    )
    return soak.report_lines(result, SOAK_PLOT.name)


def machine_facts() -> list[str]:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    redis_version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True
    ).stdout.split()[2]
    return [
        f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"machine: {os.cpu_count()} cores ({cpu}), {memory_gib:.0f} GiB, {platform.platform()}",
        f"Python {platform.python_version()}, Redis {redis_version}, everything on loopback, "
        "load generators on the same 2 cores as the servers",
    ]


def scaling_table(f: dict[str, float]) -> list[str]:
    def cores(per_core: float) -> str:
        return f"{-(-TARGET_ORDERS_PER_S // max(per_core, 1)):.0f}"

    rows = [
        ("API workers (1 core each)", f.get("api_per_s", 0)),
        (
            "Redis masters running lua/reserve.lua (1 core each; 32 orders/call)",
            f.get("engine_32_per_s", 0),
        ),
        ("Redis masters at the API's real batch size (8 orders/call)", f.get("engine_8_per_s", 0)),
        ("Orders writer processes (PostgreSQL, 1 core each)", f.get("orders-writer_per_s", 0)),
        ("Inventory writer processes (FerretDB)", f.get("inventory-writer_per_s", 0)),
    ]
    lines = ["| tier | measured per core | cores for 100,000 orders/s |", "|---|---|---|"]
    lines += [
        f"| {name} | {rate:,.0f} /s | {cores(rate)} |" if rate else f"| {name} | not measured | |"
        for name, rate in rows
    ]
    return lines


def format_row(row: Row) -> str:
    return f"| {row.what} | {row.measured} | {row.reference} | {row.target} | {row.verdict} |"


def write_report(
    results: Results,
    facts: list[str],
    sections: dict[str, list[str]],
    command: str,
) -> None:
    lines = [
        "# Benchmarks",
        "",
        f"Produced by `{command}` (loadtest/bench.py); numbers of one run.",
        "",
    ]
    lines += [f"- {fact}" for fact in facts]
    lines += [
        "",
        "## Targets",
        "",
        "| what | measured | side by side | target | verdict |",
        "|---|---|---|---|---|",
    ]
    lines += [format_row(r) for r in results.rows]
    for name in ("Soak", "Memory"):
        if name in sections:
            lines += ["", f"## {name}", "", *sections[name]]
    lines += [
        "",
        "## Scaling to 100,000 orders/s",
        "",
        *scaling_table(results.figures),
        "",
    ]
    if results.notes:
        lines += ["## Notes", "", *[f"- {note}" for note in results.notes], ""]
    lines += [READING, ""]
    REPORT.write_text("\n".join(lines))


def update_report(
    results: Results, sections: dict[str, list[str]], command: str, date: str
) -> None:
    """A run of some parts only: its rows replace the rows of the same name in the Targets table
    (new ones are added at its end) and its sections replace theirs, each marked with this run's
    command and date; the rest of BENCHMARKS.md stays as the full run left it."""
    lines = REPORT.read_text().split("\n")
    for row in results.rows:
        same = [i for i, line in enumerate(lines) if line.startswith(f"| {row.what} |")]
        if same:
            lines[same[0]] = format_row(row)
        else:
            targets = lines.index("## Targets")
            end = targets + 1
            while end < len(lines) and not lines[end].startswith("## "):
                end += 1
            while not lines[end - 1].startswith("|"):
                end -= 1
            lines.insert(end, format_row(row))
    for name, body in sections.items():
        marked = [f"Measured by `{command}` on {date}, apart from the run named at the top.", ""]
        marked += body
        heading = f"## {name}"
        if heading in lines:
            start = lines.index(heading) + 1
            end = start
            while end < len(lines) and not lines[end].startswith("## ") and lines[end] != READING:
                end += 1
            lines[start:end] = ["", *marked, ""]
        else:
            at = (
                lines.index("## Memory")
                if name == "Soak"
                else lines.index("## Scaling to 100,000 orders/s")
            )
            lines[at:at] = [heading, "", *marked, ""]
    REPORT.write_text("\n".join(lines))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"a subset of {','.join(PARTS)}")
    parser.add_argument(
        "--soak-rate",
        type=float,
        default=0.0,
        help=f"orders/s for the soak (default {SOAK_DEFAULT_RATE:,})",
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if not parts <= set(PARTS):
        raise SystemExit(f"--parts: unknown {','.join(sorted(parts - set(PARTS)))}")
    seconds = 5 if args.quick else 10
    for tool in ("wrk", "go", "redis-server"):
        if shutil.which(tool) is None:
            raise SystemExit(
                f"{tool} is missing: run `bash ops/stack.sh install` (make bench does)"
            )
    results = Results()
    facts = machine_facts()
    sections: dict[str, list[str]] = {}
    directory = WarehouseDirectory(
        [Warehouse(w, name, Point(lat, lon)) for w, (name, lat, lon) in WAREHOUSES.items()]
    )
    if parts & {"engine", "api", "writers"}:
        with processes.redis_server(BENCH_REDIS_PORT, persistent=True) as redis_url:
            settings = bench_settings(redis_url)
            print("seeding", flush=True)
            directory = await prepare_stores(settings)
            bodies = {
                "spread": write_bodies(
                    processes.BENCH_DIR / "spread.jsonl", Traffic(PRODUCTS, seed=1)
                ),
                "flash": write_bodies(
                    processes.BENCH_DIR / "flash.jsonl",
                    Traffic(PRODUCTS, seed=2, flash_sale=True),
                ),
            }
            if "engine" in parts:
                await measure_engine(results, directory, args.quick)
            if "api" in parts:
                await measure_api(results, settings, bodies, seconds)
            if "writers" in parts:
                await measure_writers(results, settings, bodies["spread"], seconds)
    if "sql" in parts:
        await measure_sql(results, seconds)
    if "memory" in parts:
        sections["Memory"] = await measure_memory(200_000 if args.quick else 1_000_000)
    if "cluster" in parts:
        await measure_cluster(results, directory, args.quick)
    if "soak" in parts:
        rate = args.soak_rate or SOAK_DEFAULT_RATE
        sections["Soak"] = await measure_soak(results, args.quick, rate)
    command = "make bench" + (" (--quick)" if args.quick else "")
    if parts == set(PARTS) or not REPORT.exists():
        write_report(results, facts, sections, command)
    else:
        flags = " --quick" if args.quick else ""
        flags += f" --soak-rate {args.soak_rate:g}" if args.soak_rate else ""
        update_report(
            results,
            sections,
            f"python -m loadtest.bench --parts {args.parts}{flags}",
            facts[0].removeprefix("date: "),
        )
    print(f"\nwrote {REPORT}")


if __name__ == "__main__":
    asyncio.run(main())
