"""The benchmark: every target of the brief measured in one run on this machine, each beside its
reference so the ratio holds on a noisy machine. Prints a table and writes BENCHMARKS.md with its
plots (BENCHMARKS-latency.png, BENCHMARKS-soak.png).

    python -m loadtest.bench                (~29 min, of which the soak ~13)
    python -m loadtest.bench --quick        (~16 min: shorter runs, 200k products for memory,
                                             a 3-minute soak)
    python -m loadtest.bench --parts soak   (one part; its rows and sections replace theirs in
                                             BENCHMARKS.md, the rest of the file stays)
    python -m loadtest.bench --parts workers,swarm --report /tmp/b/BENCHMARKS.md
                                            (a copy of the report elsewhere, plots beside it)
    python -m loadtest.bench --parts instructions --report /tmp/b/BENCHMARKS.md
                                            (~50 s: the engine's calls counted in Redis's
                                             instructions, to weigh a change to a script)

It starts its own Redis servers (AOF everysec like the stack; one under valgrind's callgrind for
the counted engine row), API workers, the nginx gateway, a
Locust swarm, writers and a Redis Cluster on loopback, and uses the stack's PostgreSQL and MongoDB
under `*_bench` databases (the soak under `fulfillment_soak`). Progress goes to stderr as it runs
(loadtest/progress.py); results to stdout and the report.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import platform
import shutil
import statistics
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import asyncpg

from engine import keys, scripts
from engine.inventory import Inventory
from engine.warehouses import Warehouse, WarehouseDirectory
from loadtest import (
    baskets,
    catalog,
    curves,
    engine_load,
    host_cpu,
    instructions,
    plots,
    processes,
    progress,
    soak,
    swarm,
)
from loadtest.catalog import FLASH_PRODUCT, Traffic, product_id
from loadtest.cluster import cluster_scaling
from loadtest.memory import measure_key_costs, measure_memory
from loadtest.processes import API_APP
from loadtest.report import (
    BASKETS,
    LATENCY,
    MACHINE,
    MEMORY,
    SCALING,
    SOAK,
    SWARM,
    TARGET_ORDERS_PER_S,
    PartMachine,
    Results,
    Row,
    cores_for,
    latency_lines,
    machine_lines,
    ordered_curves,
    redrawn,
    remember,
    scaling_lines,
    update_report,
    verdict,
    write_report,
)
from loadtest.sql_baseline import run_sql_baseline
from loadtest.stock_watch import percentile, watch_stock
from stores.mongo import WAREHOUSES as WAREHOUSE_COLLECTION
from stores.mongo import connect_mongo
from stores.postgres import apply_schema, connect_postgres
from stores.redis import TRANSIENT_ERRORS, RedisClient, connect_redis
from stores.settings import Settings, load_settings
from stores.streams import INVENTORY_GROUP, ORDERS_GROUP, writer_backlog
from stores.tasks import cancel_and_wait

REPORT: Final = processes.ROOT / "BENCHMARKS.md"
BENCH_REDIS_PORT: Final = 6400
ENGINE_REDIS_PORT: Final = 6402
ENGINE_ORDERS_PER_CALL: Final = (1, 8, 32)
# Rounds of the API and the handlers it is set against (ApiRound); medians judged.
API_ROUNDS: Final = 3
NOOP_APP: Final = "loadtest.noop_app:app"
EVALSHA_APP: Final = "loadtest.evalsha_app:app"
# The brief's target for the API over its one-EVALSHA handler (loadtest/evalsha_app.py).
BRIEF_EVALSHA_HANDLER_RATIO: Final = 2.0
# Per batch size: the tiny script and the engine's load alternated this often, the median judged.
ENGINE_PAIRS: Final = 3
# Issue 10's target for the engine: at this many orders per call, this share of the tiny script.
ISSUE_10_ENGINE_ORDERS_PER_CALL: Final = 8
ISSUE_10_ENGINE_RATIO: Final = 0.5
# Issue 10's targets for the API: a share of the no-op handler (and its stretch), and batched over
# one EVALSHA per request.
ISSUE_10_API_RATIO: Final = 0.6
ISSUE_10_API_STRETCH_RATIO: Final = 1.0
ISSUE_10_BATCHING_RATIO: Final = 2.0
SOAK_REDIS_PORT: Final = 6403
SOAK_QUEUE_REDIS_PORT: Final = 6404
BASKETS_REDIS_PORT: Final = 6405
API_PORT: Final = 8400
NOOP_PORT: Final = 8401
SOAK_API_PORT: Final = 8402
# The gateway of the workers and swarm parts; its API workers on the next ports.
GATEWAY_PORT: Final = 8410
BENCH_DATABASE: Final = "fulfillment_bench"
SOAK_DATABASE: Final = "fulfillment_soak"
BASKETS_DATABASE: Final = "fulfillment_baskets"
CLUSTER_PORTS: Final = (7100, 7101, 7102)
PRODUCTS: Final = 10_000
UNITS: Final = 10**9  # per product and warehouse: no run sells out
WRK_CONNECTIONS: Final = 64
WARMUP_S: Final = 2
LATENCY_WARMUP_S: Final = 6
# An API worker, or nginx and its workers, until they answer: for the expected durations.
START_S: Final = 3
# In this order; workers and swarm before writers, whose first step drains what the API runs left.
PARTS: Final = (
    "engine",
    "api",
    "workers",
    "swarm",
    "writers",
    "instructions",
    "baskets",
    "sql",
    "memory",
    "cluster",
    "soak",
)
# Roughly how long each part takes here, full and --quick: for the progress lines.
PART_EXPECTED_S: Final = {
    "engine": (75, 40),
    "api": (390, 260),
    "workers": (30, 20),
    "swarm": (40, 25),
    "writers": (90, 60),
    "instructions": (50, 50),
    "baskets": (60, 40),
    "sql": (80, 45),
    "memory": (150, 45),
    "cluster": (60, 35),
    "soak": (780, 380),
}
WORKER_COUNTS: Final = (1, 2)
SWARM_WORKERS: Final = 2
SWARM_USERS: Final = 64  # as many as wrk's connections
SWARM_S: Final = 30
SWARM_QUICK_S: Final = 15
SOAK_S: Final = 600
SOAK_QUICK_S: Final = 180
# The shortest hot window the orders writer accepts (engine.orders.ORDER_FINAL_LINGER_S); the
# idempotency keys get the same TTL, so both kinds of state turn over within the soak.
SOAK_WINDOW_S: Final = 60
# Fixed, not a share of the API's peak: the soak is about the state a steady rate leaves, with the
# writers, the stores and the driver beside one API worker on the same cores, well below what the
# API takes there (the writers part measures that).
SOAK_DEFAULT_RATE: Final = 500
SOAK_DRAIN_TIMEOUT_S: Final = 300
# Lines per basket in the baskets part, each beside single orders on the same setup.
BASKET_LINES: Final = (1, 3, 10)
# Bodies per basket size: wrk sends them in turn, again from the first when it is through.
BASKET_BODIES: Final = 20_000


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
    warehouses = catalog.warehouses()
    await mongo[WAREHOUSE_COLLECTION].insert_many(
        [
            {"_id": w.warehouse_id, "name": w.name, "lat": w.location.lat, "lon": w.location.lon}
            for w in warehouses
        ]
    )
    await client.close()
    await seed_stock(settings.redis_url, warehouses)
    return WarehouseDirectory(warehouses)


async def seed_stock(redis_url: str, warehouses: list[Warehouse], products: int = PRODUCTS) -> None:
    """Scripts loaded and every product of the catalogue's first `products` stocked at every
    warehouse, through lua/set_stock.lua."""
    redis = connect_redis(Settings(redis_url, False, "", "", ""))
    await scripts.load_all(redis)
    await redis.incr(keys.WAREHOUSES_VERSION_KEY)
    runner = scripts.ScriptRunner(redis, deadline_s=load_settings().command_deadline_s)
    inventory = Inventory(runner)
    levels = [
        (product, w.warehouse_id, UNITS)
        for product in [FLASH_PRODUCT, *(product_id(r) for r in range(products))]
        for w in warehouses
    ]
    for start in range(0, len(levels), 5_000):
        await inventory.set_many(levels[start : start + 5_000], "bench seed")
    await runner.aclose()
    await redis.aclose()


def write_bodies(path: Path, traffic: Traffic, count: int = 100_000, basket_lines: int = 0) -> Path:
    """`count` order bodies, one per line: single orders, or baskets of `basket_lines` lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for _ in range(count):
            body = traffic.basket_body(basket_lines) if basket_lines else traffic.order_body()
            out.write(json.dumps(body) + "\n")
    return path


# --- load drivers ---


async def _json_report(what: str, *command: str, env: dict[str, str] | None = None) -> Any:
    """Runs a load driver that prints a JSON summary as its last line, and returns it."""
    proc = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await proc.communicate()
    last = out.decode().strip().splitlines()[-1] if out.strip() else ""
    if proc.returncode != 0 or not last.startswith("{"):
        raise RuntimeError(f"{what} failed: {out.decode()[-500:]} {err.decode()[-500:]}")
    return json.loads(last)


async def wrk(url: str, bodies: Path, seconds: int, *, statuses: bool = False) -> dict[str, Any]:
    """Closed-loop peak: wrk, 1 thread, 64 connections (the brief's reference setup). With
    `statuses`, the answers are also counted by status (loadtest/wrk_post.lua)."""
    script = processes.ROOT / "loadtest" / "wrk_post.lua"
    command = ["wrk", "-t1", f"-c{WRK_CONNECTIONS}", f"-d{seconds}s", "-s", str(script), url]
    env = {**os.environ, "BODIES": str(bodies), "STATUSES": "1" if statuses else "0"}
    return dict(await _json_report("wrk", *command, env=env))


def build_ratedriver() -> Path:
    binary = processes.BENCH_DIR / "ratedriver"
    subprocess.run(
        ["go", "build", "-o", str(binary), "."],
        check=True,
        cwd=processes.ROOT / "loadtest" / "ratedriver",
        env={**os.environ, "CGO_ENABLED": "0"},
    )
    return binary


async def fixed_rate(
    binary: Path, url: str, bodies: Path, rate: float, seconds: int, idempotency_share: float = 0.0
) -> dict[str, Any]:
    """Open loop at a fixed rate; latency counted from each request's scheduled time. A share of
    the requests may carry an Idempotency-Key each (a new one per request)."""
    command = [str(binary), "-url", url, "-bodies", str(bodies), "-rate", str(int(rate))]
    command += ["-duration", f"{seconds}s", "-idempotency-share", str(idempotency_share)]
    return dict(await _json_report("ratedriver", *command))


async def ratedriver_point(
    binary: Path, url: str, bodies: Path, rate: float, seconds: int
) -> curves.Point:
    run = await fixed_rate(binary, url, bodies, rate, seconds)
    latency = run["latency_ms"]
    return curves.Point(
        rate, run["achieved_rate"], latency["p50"], latency["p99"], latency["p99.9"], run["dropped"]
    )


async def sql_point(rate: float, seconds: int) -> curves.Point:
    run = await run_sql_baseline(flash_sale=False, seconds=seconds, rate=rate)
    latency = run.latency_ms
    return curves.Point(rate, run.per_s, latency[50], latency[99], latency[99.9])


async def peak(
    what: str,
    app: str,
    port: int,
    env: dict[str, str],
    bodies: Path,
    seconds: int,
    serve: processes.ServeApp = processes.asgi_worker,
) -> dict[str, Any]:
    """The closed-loop peak of one fresh worker of `app`, after WARMUP_S of the same load."""
    expected_s = START_S + WARMUP_S + seconds
    async with progress.step(f"{what}: wrk -t1 -c{WRK_CONNECTIONS}, {seconds} s", expected_s):
        with serve(app, port, env) as worker:
            await wrk(f"{worker.url}/orders", bodies, WARMUP_S)
            return await wrk(f"{worker.url}/orders", bodies, seconds)


def confirmed_count(workers: Sequence[processes.Server]) -> progress.Count:
    """The orders the API workers confirmed so far, for the progress lines."""

    async def count() -> float:
        return await asyncio.to_thread(processes.confirmed_orders, workers)

    return count


async def redis_cpu_s(redis: RedisClient) -> float:
    """CPU seconds the Redis server has used (user + system, its threads; not its forks)."""
    cpu = await redis.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


async def drain(settings: Settings, timeout_s: float) -> tuple[dict[str, float], int]:
    """Seconds until each writer group's backlog is zero (NaN past the timeout), and the largest
    total backlog seen."""
    redis = connect_redis(settings)
    started = time.perf_counter()
    done: dict[str, float] = {}
    largest = 0
    try:
        while time.perf_counter() - started < timeout_s:
            try:
                groups = await writer_backlog(redis)
            except TRANSIENT_ERRORS as exc:
                # Redis did not answer within the socket timeout: a stall is told and the drain
                # goes on, rather than the run ending with no report.
                progress.say(f"the writers' backlog could not be read ({exc}); reading it again")
                await asyncio.sleep(0.1)
                continue
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


async def backlog_fallen(settings: Settings) -> int:
    """Minus the writers' backlog (entries not yet delivered or not yet acked, every group): a
    count that grows as they work it off, for the progress lines."""
    redis = connect_redis(settings)
    try:
        return -sum(group.lag + group.pending for group in await writer_backlog(redis))
    finally:
        await redis.aclose()


async def persisted_orders(settings: Settings) -> int:
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM orders"))
    finally:
        await conn.close()


# --- the measurements ---


@dataclass(frozen=True)
class Pipelined:
    per_s: float  # orders (or tiny calls) per second on the clock
    errors: int
    per_core: float  # per Redis CPU-second


@dataclass(frozen=True)
class EnginePair:
    tiny: Pipelined  # the tiny script, on the same Redis just before
    placed: Pipelined


@dataclass(frozen=True)
class EngineRun:
    orders_per_call: int
    pairs: list[EnginePair]  # in the order they ran, on one fresh Redis

    def per_s(self) -> float:
        return statistics.median(pair.placed.per_s for pair in self.pairs)

    def per_core(self) -> float:
        return statistics.median(pair.placed.per_core for pair in self.pairs)

    def ratios(self) -> list[float]:
        return [pair.placed.per_s / pair.tiny.per_s for pair in self.pairs]

    def core_ratios(self) -> list[float]:
        return [pair.placed.per_core / pair.tiny.per_core for pair in self.pairs]

    def ratio(self) -> float:
        """The judged ratio: the median of the pairs'."""
        return statistics.median(self.ratios())

    def core_ratio(self) -> float:
        return statistics.median(self.core_ratios())

    def errors(self) -> int:
        return sum(pair.placed.errors for pair in self.pairs)


async def measure_engine(results: Results, directory: WarehouseDirectory, quick: bool) -> None:
    """Each batch size on a fresh Redis of its own (AOF everysec, as the stack runs it): the tiny
    script and the engine's load alternated ENGINE_PAIRS times there, each ratio of a load against
    the tiny script just before it, and the median ratio judged, so that a minute when the machine
    slows one of the two moves one ratio of three, not the verdict. No figure carries the orders
    of another batch size's loads (nor the AOF rewrites they bring), and the API's Redis is spared
    them too."""
    orders = (100_000 if quick else 300_000) // ENGINE_PAIRS
    warehouses = directory.all()
    runs = []
    for per_call in ENGINE_ORDERS_PER_CALL:
        # Packed before its Redis starts, so nothing but the loads runs there.
        loads = [
            engine_load.placement_load(
                directory, Traffic(PRODUCTS, seed=per_call * ENGINE_PAIRS + pair), orders, per_call
            )
            for pair in range(ENGINE_PAIRS)
        ]
        with processes.redis_server(ENGINE_REDIS_PORT, persistent=True) as url:
            await seed_stock(url, warehouses)
            runs.append(EngineRun(per_call, await _engine_pairs(url, loads, orders)))
    results.add(
        Row(
            "Redis, tiny Lua decrement, pipeline depth 32",
            " / ".join(_median_of(pair.tiny.per_s for pair in run.pairs) for run in runs)
            + " /s (median of the runs before each engine row's loads, on its Redis); per Redis "
            "CPU-second "
            + " / ".join(_median_of(pair.tiny.per_core for pair in run.pairs) for run in runs),
            "brief's machine: ~500,000 /s",
        )
    )
    for run in runs:
        _add_engine_run(results, run)


def _median_of(values: Iterable[float]) -> str:
    return f"{statistics.median(values):,.0f}"


async def _engine_pairs(
    url: str, loads: list[engine_load.PackedLoad], orders: int
) -> list[EnginePair]:
    """For each load: the tiny script, `orders` calls of it, then the load."""
    redis = connect_redis(Settings(url, False, "", "", ""))
    tiny_load = engine_load.tiny_decrement_load(orders)
    try:
        await redis.script_load(engine_load.TINY_DECREMENT)
        pairs = []
        for load in loads:
            tiny = await _pipelined(redis, tiny_load)
            pairs.append(EnginePair(tiny, await _pipelined(redis, load)))
        return pairs
    finally:
        await redis.aclose()


async def _pipelined(redis: RedisClient, load: engine_load.PackedLoad) -> Pipelined:
    """The load sent 32 calls in flight, with the CPU the Redis server spent on it: the tiny
    script keeps this one Python client busier than it keeps Redis, so its rate on the clock
    is the client's as much as Redis's. It starts once no AOF rewrite runs: the loads before it
    grew the file, and a rewrite child working through it would share the 2 cores with this load
    but not with the one it is set against."""
    await _aof_rewrite_done(redis)
    cpu_s = await redis_cpu_s(redis)
    per_s, errors = await engine_load.send_pipelined(ENGINE_REDIS_PORT, load, 32)
    sent = len(load.commands) * load.orders_per_command
    return Pipelined(per_s, errors, sent / (await redis_cpu_s(redis) - cpu_s))


async def _aof_rewrite_done(redis: RedisClient, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        persistence = await redis.info("persistence")
        if not persistence["aof_rewrite_in_progress"] and not persistence["aof_rewrite_scheduled"]:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"an AOF rewrite still runs after {timeout_s:.0f} s")
        await asyncio.sleep(0.1)


async def measure_instructions(results: Results, directory: WarehouseDirectory) -> None:
    """The engine's calls at each batch size counted in Redis's instructions (loadtest/
    instructions.py), each on a fresh Redis stocked as the engine rows' are, right after the tiny
    script there."""
    tiny = engine_load.tiny_decrement_load(instructions.ORDERS)
    counts = [
        await instructions.count_load(
            tiny,
            engine_load.placement_load(
                directory, Traffic(PRODUCTS, seed=per_call), instructions.ORDERS, per_call
            ),
            lambda url: seed_stock(url, directory.all()),
        )
        for per_call in ENGINE_ORDERS_PER_CALL
    ]
    for per_call, count in zip(ENGINE_ORDERS_PER_CALL, counts, strict=True):
        results.figures[f"engine_{per_call}_instructions"] = count.placed.per_order
    results.add(
        Row(
            "Engine, counted: Redis instructions per order (callgrind), "
            + " / ".join(map(str, ENGINE_ORDERS_PER_CALL))
            + " order(s) per call",
            " / ".join(f"{count.placed.per_order:,.0f}" for count in counts)
            + "; the tiny script "
            + " / ".join(f"{count.tiny.per_call:,.0f}" for count in counts)
            + " per call (before each, on its Redis)",
            "the tiny script's per call over the engine's per order: "
            + " / ".join(f"{count.tiny.per_call / count.placed.per_order:.2f}x" for count in counts)
            + " (user-space instructions only: no kernel, no memory stalls)",
        )
    )


def _add_engine_run(results: Results, run: EngineRun) -> None:
    per_call = run.orders_per_call
    results.figures[f"engine_{per_call}_per_s"] = run.per_s()
    results.figures[f"engine_{per_call}_per_core"] = run.per_core()
    ratio, core_ratio = run.ratio(), run.core_ratio()
    target, judged = ">= 100,000 /s (= 0.20x the brief's tiny-script figure)", ""
    if per_call == 32:
        judged = verdict(run.per_s() >= 100_000 or ratio >= 0.20)
    if per_call == ISSUE_10_ENGINE_ORDERS_PER_CALL:
        target, judged = (
            f">= {ISSUE_10_ENGINE_RATIO}x the tiny script (issue 10)",
            verdict(ratio >= ISSUE_10_ENGINE_RATIO),
        )
    results.add(
        Row(
            f"Engine: orders placed/s, {per_call} order(s) per script call",
            f"{run.per_s():,.0f} /s, median of {len(run.pairs)} loads ({run.errors()} errors; "
            f"{run.per_core():,.0f} per Redis CPU-second)",
            f"{ratio:.2f}x the tiny script (median of {_ratios(run.ratios())}, each load against "
            f"the tiny script just before it); per Redis CPU-second {core_ratio:.2f}x "
            f"({_ratios(run.core_ratios())})",
            target,
            judged,
        )
    )


def _ratios(ratios: Sequence[float]) -> str:
    return " / ".join(f"{ratio:.2f}" for ratio in ratios)


@dataclass(frozen=True)
class ApiRound:
    """One worker's closed-loop peaks, each on a fresh worker, back to back: the no-op handler
    (the reference), the no-op handler with one EVALSHA through redis-py (the brief's second
    reference), the API, the API with one EVALSHA per request and the API on a flash sale; each
    is wrk's summary (`wrk` above)."""

    noop: dict[str, Any]
    evalsha_handler: dict[str, Any]
    batched: dict[str, Any]  # the API as it serves, spread traffic
    single: dict[str, Any]  # one EVALSHA per request, spread traffic
    flash: dict[str, Any]  # every order on one product

    def noop_ratio(self) -> float:
        return float(self.batched["rate"] / self.noop["rate"])

    def evalsha_handler_ratio(self) -> float:
        return float(self.batched["rate"] / self.evalsha_handler["rate"])

    def batching_ratio(self) -> float:
        return float(self.batched["rate"] / self.single["rate"])

    def flash_ratio(self) -> float:
        return float(self.flash["rate"] / self.batched["rate"])


@dataclass(frozen=True)
class ApiSummary:
    """What the rounds say together: each ratio the median of the rounds' own ratios; the API's
    rate and latency those of its median round."""

    typical: ApiRound  # the round whose API rate is the median
    noop_per_s: float  # medians of the rounds' rates
    evalsha_handler_per_s: float
    single_per_s: float
    flash_per_s: float
    noop_ratio: float
    evalsha_handler_ratio: float
    batching_ratio: float
    flash_ratio: float

    @classmethod
    def of(cls, rounds: Sequence[ApiRound]) -> ApiSummary:
        def median(value: Callable[[ApiRound], float]) -> float:
            return statistics.median(value(r) for r in rounds)

        return cls(
            typical=sorted(rounds, key=lambda r: float(r.batched["rate"]))[len(rounds) // 2],
            noop_per_s=median(lambda r: r.noop["rate"]),
            evalsha_handler_per_s=median(lambda r: r.evalsha_handler["rate"]),
            single_per_s=median(lambda r: r.single["rate"]),
            flash_per_s=median(lambda r: r.flash["rate"]),
            noop_ratio=median(ApiRound.noop_ratio),
            evalsha_handler_ratio=median(ApiRound.evalsha_handler_ratio),
            batching_ratio=median(ApiRound.batching_ratio),
            flash_ratio=median(ApiRound.flash_ratio),
        )

    @property
    def per_s(self) -> float:
        return float(self.typical.batched["rate"])


async def measure_api(
    results: Results, settings: Settings, bodies: dict[str, Path], seconds: int
) -> None:
    """API_ROUNDS rounds of the no-op handler, the same with one EVALSHA through redis-py, the
    API, the API with one EVALSHA per request and the flash sale, each ratio taken within its
    round and the median judged, so that a minute when the machine slows one run moves one ratio
    of three, not the verdict; the latency curves after the first round, while this Redis is
    still small (see measure_engine); then the no-op handler on granian."""
    rounds: list[ApiRound] = []
    for number in range(1, API_ROUNDS + 1):
        rounds.append(await _api_round(settings, bodies, seconds, number))
        if number == 1:
            await measure_latency(results, settings, bodies["spread"], seconds, rounds[0])
    noop_granian = await peak(
        "no-op handler on granian",
        NOOP_APP,
        NOOP_PORT,
        {},
        bodies["spread"],
        seconds,
        serve=processes.granian_worker,
    )
    api = ApiSummary.of(rounds)
    f = results.figures
    f.update(api_per_s=api.per_s, noop_per_s=api.noop_per_s, unbatched_per_s=api.single_per_s)
    f.update(evalsha_handler_per_s=api.evalsha_handler_per_s)
    f.update(flash_per_s=api.flash_per_s, noop_granian_per_s=noop_granian["rate"])
    results.add(
        Row(
            "No-op Litestar POST handler on the API's server, uvicorn (reference)",
            f"{api.noop_per_s:,.0f} /s, median of {_rates(r.noop for r in rounds)}",
            "brief's machine: ~22,000 /s on granian",
        )
    )
    results.add(
        Row(
            "The same no-op handler on granian (the brief's server)",
            f"{noop_granian['rate']:,.0f} /s",
            f"the API = {api.per_s / noop_granian['rate']:.2f}x this",
        )
    )
    results.add(
        Row(
            "The no-op handler with one EVALSHA through redis-py's asyncio client per request "
            "(the brief's second reference; the tiny script)",
            f"{api.evalsha_handler_per_s:,.0f} /s, median of "
            f"{_rates(r.evalsha_handler for r in rounds)}",
            f"the API = {api.evalsha_handler_ratio:.2f}x this (median of "
            f"{_ratios([r.evalsha_handler_ratio() for r in rounds])}, each within its round); "
            "brief's machine: ~10,500 /s on granian",
            f">= {BRIEF_EVALSHA_HANDLER_RATIO}x (the brief)",
            verdict(api.evalsha_handler_ratio >= BRIEF_EVALSHA_HANDLER_RATIO),
        )
    )
    typical = api.typical.batched
    results.add(
        Row(
            "API: confirmed orders/s per worker (spread traffic)",
            f"{api.per_s:,.0f} /s, median of {_rates(r.batched for r in rounds)}; "
            f"p50 {typical['p50_ms']:.1f} ms, p99 {typical['p99_ms']:.1f} ms",
            f"{api.noop_ratio:.2f}x the no-op handler (median of "
            f"{_ratios([r.noop_ratio() for r in rounds])}, each run against the no-op handler's "
            "just before it)",
            ">= 15,000 /s (= 0.68x the brief's no-op figure); issue 10: "
            f">= {ISSUE_10_API_RATIO}x the no-op handler, stretch {ISSUE_10_API_STRETCH_RATIO}x",
            f"{verdict(api.per_s >= 15_000 or api.noop_ratio >= 0.68)}; issue 10 "
            f"{verdict(api.noop_ratio >= ISSUE_10_API_RATIO)}, stretch "
            f"{verdict(api.noop_ratio >= ISSUE_10_API_STRETCH_RATIO)}",
        )
    )
    results.add(
        Row(
            "API with one EVALSHA per request (no micro-batching)",
            f"{api.single_per_s:,.0f} /s, median of {_rates(r.single for r in rounds)}",
            f"batched API = {api.batching_ratio:.2f}x this (median of "
            f"{_ratios([r.batching_ratio() for r in rounds])}, each within its round)",
            f">= 1.5x; issue 10: >= {ISSUE_10_BATCHING_RATIO}x",
            f"{verdict(api.batching_ratio >= 1.5)}; issue 10 "
            f"{verdict(api.batching_ratio >= ISSUE_10_BATCHING_RATIO)}",
        )
    )
    results.add(
        Row(
            "Flash sale: every order on one product",
            f"{api.flash_per_s:,.0f} /s, median of {_rates(r.flash for r in rounds)}",
            f"{api.flash_ratio:.0%} of spread (median of "
            + " / ".join(f"{r.flash_ratio():.0%}" for r in rounds)
            + ", each within its round)",
            ">= 90% of spread",
            verdict(api.flash_ratio >= 0.9),
        )
    )
    for r in rounds:
        for run in (r.batched, r.single, r.flash):
            if run["errors"]:
                results.notes.append(f"wrk counted {run['errors']} errors/non-2xx in a run: {run}")


async def _api_round(
    settings: Settings, bodies: dict[str, Path], seconds: int, number: int
) -> ApiRound:
    of = f"round {number}/{API_ROUNDS}"
    spread = bodies["spread"]
    noop = await peak(f"no-op handler, {of}", NOOP_APP, NOOP_PORT, {}, spread, seconds)
    env = bench_env(settings)
    evalsha_handler = await peak(
        f"no-op handler with one EVALSHA through redis-py, {of}",
        EVALSHA_APP,
        NOOP_PORT,
        env,
        spread,
        seconds,
    )
    batched = await peak(f"API, spread traffic, {of}", API_APP, API_PORT, env, spread, seconds)
    single = await peak(
        f"API, one EVALSHA per request, {of}",
        API_APP,
        API_PORT,
        bench_env(settings, API_BATCHING="0"),
        spread,
        seconds,
    )
    flash = await peak(f"API, flash sale, {of}", API_APP, API_PORT, env, bodies["flash"], seconds)
    return ApiRound(noop, evalsha_handler, batched, single, flash)


def _rates(runs: Iterable[dict[str, Any]]) -> str:
    return " / ".join(f"{run['rate']:,.0f}" for run in runs)


def refused_by(run: dict[str, Any]) -> dict[str, int]:
    """A ratedriver run's orders that were not confirmed: per status answered, then the requests
    that got no answer (a transport error or timeout) and those never sent (too many in flight)."""
    statuses = run["status_counts"].items()
    found = {f"answered {status}": int(n) for status, n in statuses if status != "201"}
    found["without an answer"] = int(run["errors"])
    found["dropped by the driver"] = int(run["dropped"])
    return found


async def measure_latency(
    results: Results, settings: Settings, bodies: Path, seconds: int, peaks: ApiRound
) -> None:
    """Open loop on one warmed worker: at half the peak while one client watches the live stock
    stream of the most popular product, then at shares of the peak without it (its tailer decodes
    every event in the worker, so the two are measured apart): the API's throughput-latency
    curve, whose point at half the peak is the latency target. The stream first, so that it is
    measured on a worker that the curve's highest points have not overloaded. Then the no-op
    handler's curve at shares of its own peak, by the same driver: what this machine gives a
    worker that does nothing, as the reference for the API's."""
    peak_rate = peaks.batched["rate"]
    binary = build_ratedriver()
    delays_ms: list[float] = []
    with processes.asgi_worker(API_APP, API_PORT, bench_env(settings)) as worker:
        url = f"{worker.url}/orders"
        # A new worker fills its ring cache and connection pools first: warm it as a server
        # that has been up a while would be.
        async with progress.step("API warm-up, open loop at half the peak", LATENCY_WARMUP_S):
            await fixed_rate(binary, url, bodies, peak_rate / 2, LATENCY_WARMUP_S)
        async with progress.step("live stock stream at half the peak", WARMUP_S + seconds):
            watcher = asyncio.create_task(watch_stock(worker.url, product_id(0), delays_ms))
            await fixed_rate(binary, url, bodies, peak_rate / 2, WARMUP_S)
            delays_ms.clear()
            watched = await fixed_rate(binary, url, bodies, peak_rate / 2, seconds)
            await cancel_and_wait(watcher)
        curve = await _swept(binary, url, bodies, "API, 1 worker", peak_rate, seconds)
    with processes.asgi_worker(NOOP_APP, NOOP_PORT, {}) as worker:
        url = f"{worker.url}/orders"
        noop_peak = peaks.noop["rate"]
        async with progress.step("no-op handler warm-up, open loop", LATENCY_WARMUP_S):
            await fixed_rate(binary, url, bodies, noop_peak / 2, LATENCY_WARMUP_S)
        noop_curve = await _swept(
            binary, url, bodies, "no-op handler, 1 worker", noop_peak, seconds
        )
    results.curves["noop"] = noop_curve
    noop_half = noop_curve.at(0.5)
    results.curves["api"] = curve
    half = curve.at(0.5)
    results.figures["p99_half_ms"] = half.p99_ms
    results.add(
        Row(
            "Latency at half the peak rate",
            f"p50 {half.p50_ms:.2f} ms, p99 {half.p99_ms:.2f} ms, p99.9 {half.p999_ms:.2f} ms "
            f"({half.achieved_per_s:,.0f} /s achieved, {half.dropped} dropped)",
            f"{LATENCY}: p99 {', '.join(f'{p.p99_ms:.1f}' for p in curve.points)} ms at "
            + ", ".join(f"{share:.0%}" for share in curves.SHARES)
            + f"; the no-op handler at half its own peak ({noop_half.achieved_per_s:,.0f} /s "
            f"achieved): p50 {noop_half.p50_ms:.2f} ms, p99 {noop_half.p99_ms:.2f} ms",
            "p99 < 10 ms",
            verdict(half.p99_ms < 10),
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


async def _swept(
    binary: Path, url: str, bodies: Path, system: str, peak_rate: float, seconds: int
) -> curves.Curve:
    """A worker's throughput-latency curve, driven open loop by loadtest/ratedriver."""
    measure = functools.partial(ratedriver_point, binary, url, bodies)
    return await curves.sweep(system, "loadtest/ratedriver", peak_rate, seconds, measure)


@dataclass(frozen=True)
class GatewayRun:
    workers: int
    per_s: float  # confirmed orders (2xx answers) per second
    p99_ms: float
    errors: int  # wrk's: connection errors, timeouts and non-2xx answers
    # By tier (gateway, api, redis): orders per CPU-second of its processes.
    per_core: dict[str, float]


async def measure_workers(results: Results, settings: Settings, bodies: Path, seconds: int) -> None:
    """1, then 2 API workers behind the nginx gateway, wrk through it: confirmed orders/s and p99
    of each; and in the 2-worker run what each tier did per CPU-second it used (nginx, the API
    workers, Redis): the per-core figures of the scaling table."""
    redis = connect_redis(settings)
    try:
        runs = [
            await _behind_gateway(redis, bench_env(settings), bodies, seconds, count)
            for count in WORKER_COUNTS
        ]
    finally:
        await redis.aclose()
    for run in runs:
        results.figures[f"workers_{run.workers}_per_s"] = run.per_s
        results.figures[f"workers_{run.workers}_p99_ms"] = run.p99_ms
        if run.errors:
            results.notes.append(f"wrk counted {run.errors} errors/non-2xx through the gateway")
    most = runs[-1]
    results.figures.update({f"{tier}_per_core": rate for tier, rate in most.per_core.items()})
    alone = results.figures.get("api_per_s")
    results.add(
        Row(
            "API workers behind the nginx gateway (wrk -t1 -c64 through it): "
            + " / ".join(str(run.workers) for run in runs),
            " / ".join(f"{run.per_s:,.0f}" for run in runs)
            + " confirmed orders/s, p99 "
            + " / ".join(f"{run.p99_ms:.1f}" for run in runs)
            + " ms",
            f"{most.workers} workers = {most.per_s / runs[0].per_s:.2f}x one, on 2 cores shared "
            f"with nginx, Redis and wrk; per CPU-second: API workers "
            f"{most.per_core['api']:,.0f} orders, nginx {most.per_core['gateway']:,.0f}, Redis "
            f"{most.per_core['redis']:,.0f}"
            + (f"; 1 worker without the gateway: {alone:,.0f} /s" if alone else ""),
        )
    )


async def _behind_gateway(
    redis: RedisClient, env: dict[str, str], bodies: Path, seconds: int, count: int
) -> GatewayRun:
    what = f"{count} API worker(s) behind the gateway: wrk -t1 -c{WRK_CONNECTIONS}, {seconds} s"
    async with progress.step(what, 2 * START_S + WARMUP_S + seconds):
        with (
            processes.api_workers(count, GATEWAY_PORT, env) as workers,
            processes.gateway(GATEWAY_PORT, count) as nginx,
        ):
            url = f"{nginx.url}/orders"
            await wrk(url, bodies, WARMUP_S)
            before = await _tiers_cpu_s(redis, nginx, workers)
            run = await wrk(url, bodies, seconds)
            after = await _tiers_cpu_s(redis, nginx, workers)
    answered = run["requests"] - run["errors"]
    return GatewayRun(
        count,
        answered / run["duration_s"],
        run["p99_ms"],
        run["errors"],
        {tier: answered / (after[tier] - before[tier]) for tier in before},
    )


async def _tiers_cpu_s(
    redis: RedisClient, nginx: processes.Server, workers: Sequence[processes.Server]
) -> dict[str, float]:
    return {
        "gateway": nginx.cpu_s(),
        "api": sum(worker.cpu_s() for worker in workers),
        "redis": await redis_cpu_s(redis),
    }


async def measure_swarm(results: Results, settings: Settings, quick: bool) -> list[str]:
    """Locust in distributed mode (1 master, SWARM_WORKERS workers, headless, --csv) through the
    gateway to 2 API workers: what it drove, and what a Locust worker costs per order, hence the
    workers a swarm at 100,000 orders/s needs."""
    seconds = SWARM_QUICK_S if quick else SWARM_S
    what = (
        f"swarm: Locust, 1 master + {SWARM_WORKERS} workers, {SWARM_USERS} users, {seconds} s, "
        "through the gateway"
    )
    with (
        processes.api_workers(2, GATEWAY_PORT, bench_env(settings)) as workers,
        processes.gateway(GATEWAY_PORT, 2) as nginx,
    ):
        async with progress.step(what, seconds + swarm.START_S, confirmed_count(workers)):
            run = await asyncio.to_thread(
                swarm.run_swarm,
                nginx.url,
                processes.BENCH_DIR / "swarm",
                workers=SWARM_WORKERS,
                users=SWARM_USERS,
                seconds=seconds,
                env={"PRODUCTS": str(PRODUCTS)},
            )
    per_core = run.orders_per_worker_core()
    results.figures.update(
        swarm_per_s=run.total.per_s,
        swarm_orders_per_s=run.orders.per_s,
        swarm_orders_per_worker_core=per_core,
    )
    results.add(
        Row(
            f"Locust swarm: 1 master + {SWARM_WORKERS} workers (distributed, headless) through "
            "the gateway to 2 API workers",
            f"{run.orders.per_s:,.0f} orders/s ({run.total.per_s:,.0f} requests/s), "
            f"{run.total.failures:,} failures, POST /orders p99 {run.orders.p99_ms:.0f} ms; "
            f"requests by worker: {' / '.join(f'{n:,}' for n in run.by_worker.values())}",
            f"{per_core:,.0f} orders per Locust worker CPU-second: "
            f"{cores_for(per_core)} workers for {TARGET_ORDERS_PER_S:,} orders/s (computed); "
            f"see {SWARM}",
            "every worker connected and sending; 0 failures",
            verdict(run.healthy()),
        )
    )
    return swarm.report_lines(run, TARGET_ORDERS_PER_S)


async def measure_writers(results: Results, settings: Settings, bodies: Path, seconds: int) -> None:
    """One process per writer (each a core in production), started on the backlog the earlier
    runs left, with the CPU each used for it; then both beside the API, and the time the backlog
    takes to clear after it."""
    before = await persisted_orders(settings)
    env = bench_env(settings)
    with (
        processes.writers(env, "--only", "orders") as orders_writer,
        processes.writers(env, "--only", "inventory") as inventory_writer,
    ):
        writer_of = {ORDERS_GROUP: orders_writer, INVENTORY_GROUP: inventory_writer}
        what = "writers: drain the backlog the API runs left"
        acked = functools.partial(backlog_fallen, settings)
        async with progress.step(what, 20, acked, "stream entries acked/s"):
            drained, backlog = await drain(settings, 900)
        orders = await persisted_orders(settings) - before
        api_peak = results.figures.get("api_per_s")
        if not orders:
            progress.say(
                "writers: no orders in the backlog, so no sustained rates: the API parts before "
                "this part leave them (--parts api,writers)"
            )
        sustained = (
            (ORDERS_GROUP, "orders -> PostgreSQL"),
            (INVENTORY_GROUP, "inventory -> MongoDB (FerretDB)"),
        )
        for group, label in sustained if orders else ():
            rate = orders / drained[group]
            # From its start: the few hundred milliseconds it takes to connect are counted too.
            per_core = orders / processes.group_cpu_s(writer_of[group].pid)
            results.figures[f"{group}_per_s"] = rate
            results.figures[f"{group}_per_core"] = per_core
            results.add(
                Row(
                    f"Writer {label}: sustained rate from a backlog (one process)",
                    f"{orders:,} orders in {drained[group]:.1f} s = {rate:,.0f} orders/s "
                    f"(backlog {backlog:,} entries in all; {per_core:,.0f} per CPU-second)",
                    f"{rate / api_peak:.2f}x the API's peak"
                    if api_peak
                    else "the API's peak: not measured in this run (part api)",
                    ">= the API's peak",
                    verdict(rate >= api_peak) if api_peak else "",
                )
            )
        what = "writers beside the API, then the drain"
        async with progress.step(what, seconds + 20, acked, "stream entries acked/s"):
            with processes.asgi_worker(API_APP, API_PORT, env) as worker:
                run = await wrk(f"{worker.url}/orders", bodies, seconds)
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


async def measure_baskets(results: Results, seconds: int, machine: str) -> list[str]:
    """Confirmed baskets/s of one API worker for each of BASKET_LINES lines, beside single orders
    measured the same way just before (the same worker setup, driver and Redis), with what each
    costs the worker and Redis in CPU. On a Redis and databases of their own: the baskets' records
    and events then weigh on no other part, and the single orders here are the reference whatever
    the parts run before."""
    with processes.redis_server(BASKETS_REDIS_PORT, persistent=True) as redis_url:
        settings = bench_settings(redis_url, BASKETS_DATABASE)
        async with progress.step("baskets: seeding its stores and bodies", 20):
            await prepare_stores(settings)
            # Seed 1: the API rows' spread traffic.
            bodies = {
                0: write_bodies(processes.BENCH_DIR / "spread.jsonl", Traffic(PRODUCTS, seed=1))
            }
            for lines in BASKET_LINES:
                path = processes.BENCH_DIR / f"baskets-{lines}.jsonl"
                traffic = Traffic(PRODUCTS, seed=10 + lines)
                bodies[lines] = write_bodies(path, traffic, BASKET_BODIES, basket_lines=lines)
        redis = connect_redis(settings)
        try:
            env = bench_env(settings)
            single = await _basket_run(redis, env, bodies[0], 0, seconds)
            runs = [
                await _basket_run(redis, env, bodies[lines], lines, seconds)
                for lines in BASKET_LINES
            ]
        finally:
            await redis.aclose()
    results.figures["baskets_single_per_s"] = single.per_s
    results.figures.update({f"baskets_{run.lines}_per_s": run.per_s for run in runs})
    for run in (single, *runs):
        if run.not_confirmed:
            results.notes.append(
                f"baskets part, {run.lines or 'single'} line(s): answers other than 201: "
                f"{run.refused_text()}"
            )
    results.add(
        Row(
            "API: confirmed baskets/s per worker, "
            + " / ".join(str(lines) for lines in BASKET_LINES)
            + " lines (spread traffic)",
            " / ".join(f"{run.per_s:,.0f}" for run in runs)
            + " /s ("
            + " / ".join(f"{run.lines_per_s:,.0f}" for run in runs)
            + " lines/s), p99 "
            + " / ".join(f"{run.p99_ms:.1f}" for run in runs)
            + " ms",
            f"single orders on the same setup: {single.per_s:,.0f} /s; baskets = "
            + " / ".join(f"{run.per_s / single.per_s:.2f}x" for run in runs)
            + f" that; see {BASKETS}",
        )
    )
    return baskets.report_lines(single, runs, machine)


async def _basket_run(
    redis: RedisClient, env: dict[str, str], bodies: Path, lines: int, seconds: int
) -> baskets.BasketRun:
    """One fresh API worker, closed loop as the API rows drive it (wrk -t1 -c64 after WARMUP_S
    of the same load), its answers counted by status, with the worker's and Redis's CPU."""
    what = f"baskets: {lines} line(s)" if lines else "baskets: single orders, the reference"
    async with progress.step(
        f"{what}, wrk -t1 -c{WRK_CONNECTIONS}, {seconds} s", START_S + WARMUP_S + seconds
    ):
        with processes.asgi_worker(API_APP, API_PORT, env) as worker:
            url = f"{worker.url}/orders"
            await wrk(url, bodies, WARMUP_S, statuses=True)
            worker_before, redis_before = worker.cpu_s(), await redis_cpu_s(redis)
            run = await wrk(url, bodies, seconds, statuses=True)
            worker_cpu_s = worker.cpu_s() - worker_before
            redis_cpu = await redis_cpu_s(redis) - redis_before
    return baskets.BasketRun.of(lines, run, worker_cpu_s, redis_cpu)


async def measure_sql(results: Results, seconds: int) -> None:
    """The usual approach, one SQL transaction per order (pgbench, 32 clients): its peak, on
    random products and on one, then its throughput-latency curve at shares of that peak."""
    async with progress.step("SQL baseline peaks: pgbench, spread then flash sale", 2 * seconds):
        spread_run = await run_sql_baseline(flash_sale=False, seconds=seconds)
        flash = (await run_sql_baseline(flash_sale=True, seconds=seconds)).per_s
    spread = spread_run.per_s
    results.curves["sql"] = await curves.sweep(
        "SQL baseline", "pgbench -R", spread, seconds, sql_point
    )
    results.figures.update(sql_per_s=spread, sql_flash_per_s=flash)
    results.add(
        Row(
            "SQL baseline: one transaction per order, random products",
            f"{spread:,.0f} /s, p99 {spread_run.latency_ms[99]:.1f} ms (closed loop)",
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


async def measure_soak(results: Results, quick: bool, rate: float, plot: Path) -> list[str]:
    """Bounded state: orders at a fixed rate for SOAK_S into one API worker with the writers and
    sweeps beside it (`python -m writers`), hot window and idempotency TTL at SOAK_WINDOW_S, on a
    Redis of its own; sampled throughout, then the writers drain and the records leave."""
    seconds = SOAK_QUICK_S if quick else SOAK_S
    async with progress.step("soak: each kind of key's memory, alone", 15):
        costs = await measure_key_costs()
    binary = build_ratedriver()
    bodies = write_bodies(processes.BENCH_DIR / "soak.jsonl", Traffic(PRODUCTS, seed=5))
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
                processes.asgi_worker(API_APP, SOAK_API_PORT, env) as worker,
            ):
                # The writers first persist the seed's stock events, which are then trimmed.
                async with progress.step("soak: the writers settle the seed's events", 30):
                    baseline = await soak.settle(probe, SOAK_DRAIN_TIMEOUT_S)
                started = time.monotonic()
                stop = asyncio.Event()
                sampler = asyncio.create_task(soak.sample_every(probe, started, stop, samples))
                try:
                    async with progress.step(
                        f"soak: {rate:,.0f} orders/s for {progress.duration(seconds)}, "
                        f"ORDER_HOT_WINDOW_S={SOAK_WINDOW_S}",
                        seconds,
                        confirmed_count([worker]),
                    ):
                        url = f"{worker.url}/orders"
                        run = await fixed_rate(binary, url, bodies, rate, seconds, 1.0)
                    load_s = time.monotonic() - started
                    progress.say(f"soak: load stopped ({json.dumps(run)})")
                    async with progress.step("soak: the writers drain", 15):
                        drained, _ = await drain(settings, SOAK_DRAIN_TIMEOUT_S)
                    # Watch the last records leave: one hot window after they were persisted.
                    linger_s = load_s + SOAK_WINDOW_S + 15 - (time.monotonic() - started)
                    async with progress.step("soak: the last records leave Redis", linger_s):
                        await asyncio.sleep(max(0.0, linger_s))
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
        products=PRODUCTS,
        load_s=load_s,
        window_s=SOAK_WINDOW_S,
        baseline_bytes=baseline.used_bytes,
        samples=samples,
        confirmed=confirmed,
        refused=int(run["sent"]) - confirmed,
        refused_by=refused_by(run),
        p99_ms=float(run["latency_ms"]["p99"]),
        persisted=persisted,
        drain_s=max(drained.values()),
        postgres=pg_bytes,
        costs=costs,
    )
    (processes.BENCH_DIR / "soak.csv").write_text(soak.samples_csv(samples))
    plots.soak_memory(result, plot)
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
    return soak.report_lines(result, plot.name)


def utc_minute() -> str:
    """Now, as the report dates a run and each part: UTC, to the minute."""
    return f"{datetime.now(UTC):%Y-%m-%d %H:%M}"


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
        f"date: {utc_minute()} UTC",
        f"machine: {os.cpu_count()} cores ({cpu}), {memory_gib:.0f} GiB, {platform.platform()}",
        f"Python {platform.python_version()}, Redis {redis_version}, everything on loopback, "
        "load generators on the same 2 cores as the servers",
    ]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"a subset of {','.join(PARTS)}")
    parser.add_argument(
        "--soak-rate",
        type=float,
        default=0.0,
        help=f"orders/s for the soak (default {SOAK_DEFAULT_RATE:,})",
    )
    parser.add_argument(
        "--report", type=Path, default=REPORT, help="the report to write; plots go beside it"
    )
    args = parser.parse_args()
    unknown = set(args.parts.split(",")) - set(PARTS)
    if unknown:
        raise SystemExit(f"--parts: unknown {','.join(sorted(unknown))}")
    args.report.parent.mkdir(parents=True, exist_ok=True)  # its plots are written beside it
    if "api" in args.parts.split(",") and not (processes.VENV_BIN / "granian").exists():
        raise SystemExit(
            "granian, for the no-op reference on the brief's server: pip install -e '.[dev]'"
        )
    tools = ["wrk", "go", "redis-server"]
    if "instructions" in args.parts.split(","):
        tools += ["valgrind", "vgdb"]
    for tool in tools:
        if shutil.which(tool) is None:
            raise SystemExit(
                f"{tool} is missing: run `bash ops/stack.sh install` (make bench does)"
            )
    return args


class Parts:
    """The parts this run measures, in PARTS order, each announced with its expected duration."""

    def __init__(self, names: str, quick: bool) -> None:
        self.names: list[str] = [name for name in PARTS if name in names.split(",")]
        self._quick = quick
        self.machine: dict[str, PartMachine] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def expected_s(self, name: str) -> int:
        full, quick = PART_EXPECTED_S[name]
        return quick if self._quick else full

    @contextlib.asynccontextmanager
    async def step(self, name: str) -> AsyncIterator[None]:
        """Runs a part: announced, and what the machine's CPUs did meanwhile kept (self.machine)."""
        number = f"{self.names.index(name) + 1}/{len(self.names)}"
        async with progress.step(f"part {number}: {name}", self.expected_s(name)):
            started, before = utc_minute(), host_cpu.sample()
            yield
            self.machine[name] = PartMachine(started, host_cpu.span(before, host_cpu.sample()))


async def main() -> None:
    args = parse_args()
    parts = Parts(args.parts, args.quick)
    seconds = 5 if args.quick else 10
    total_s = sum(parts.expected_s(name) for name in parts.names)
    progress.say(f"parts {', '.join(parts.names)}: expected ~{progress.duration(total_s)} in all")
    results = Results()
    facts = machine_facts()
    sections: dict[str, list[str]] = {}
    directory = WarehouseDirectory(catalog.warehouses())
    if set(parts.names) & {"engine", "api", "workers", "swarm", "writers"}:
        with processes.redis_server(BENCH_REDIS_PORT, persistent=True) as redis_url:
            settings = bench_settings(redis_url)
            async with progress.step("seeding the bench stores", 20):
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
                async with parts.step("engine"):
                    await measure_engine(results, directory, args.quick)
            if "api" in parts:
                async with parts.step("api"):
                    await measure_api(results, settings, bodies, seconds)
            if "workers" in parts:
                async with parts.step("workers"):
                    await measure_workers(results, settings, bodies["spread"], seconds)
            if "swarm" in parts:
                async with parts.step("swarm"):
                    sections[SWARM] = await measure_swarm(results, settings, args.quick)
            if "writers" in parts:
                async with parts.step("writers"):
                    await measure_writers(results, settings, bodies["spread"], seconds)
    if "instructions" in parts:
        async with parts.step("instructions"):
            await measure_instructions(results, directory)
    if "baskets" in parts:
        async with parts.step("baskets"):
            machine = f"{facts[1].removeprefix('machine: ')}; {facts[2]}"
            sections[BASKETS] = await measure_baskets(results, seconds, machine)
    if "sql" in parts:
        async with parts.step("sql"):
            await measure_sql(results, seconds)
    if "memory" in parts:
        async with parts.step("memory"):
            sections[MEMORY] = await measure_memory(200_000 if args.quick else 1_000_000)
    if "cluster" in parts:
        async with parts.step("cluster"):
            await measure_cluster(results, directory, args.quick)
    if "soak" in parts:
        rate = args.soak_rate or SOAK_DEFAULT_RATE
        async with parts.step("soak"):
            soak_plot = plot(args.report, "soak")
            sections[SOAK] = await measure_soak(results, args.quick, rate, soak_plot)
    results.machine.update(parts.machine)
    stored = remember(results, args.report)
    derived = redrawn(results, writes_whole(args))
    if stored.curves and LATENCY in derived:
        latency_plot = plot(args.report, "latency")
        plots.throughput_latency(ordered_curves(stored), latency_plot)
        sections[LATENCY] = latency_lines(stored, latency_plot.name)
    if SCALING in derived:
        sections[SCALING] = scaling_lines(stored.figures)
    if MACHINE in derived:
        sections[MACHINE] = machine_lines(stored.machine)
    write(args, results, facts, sections)
    print(f"\nwrote {args.report}")


def plot(report: Path, name: str) -> Path:
    """A plot's file, beside the report: BENCHMARKS-soak.png for BENCHMARKS.md."""
    return report.with_name(f"{report.stem}-{name}.png")


def writes_whole(args: argparse.Namespace) -> bool:
    """A run of every part writes the report whole, as does a run with no report yet."""
    return set(args.parts.split(",")) == set(PARTS) or not args.report.exists()


def write(
    args: argparse.Namespace, results: Results, facts: list[str], sections: dict[str, list[str]]
) -> None:
    """The whole report after a run of every part (or when there is none yet); else this run's
    rows and sections in place."""
    every_part = set(args.parts.split(",")) == set(PARTS)
    flags = " --quick" if args.quick else ""
    flags += f" --soak-rate {args.soak_rate:g}" if args.soak_rate else ""
    command = f"python -m loadtest.bench --parts {args.parts}{flags}"
    if every_part:
        command = "make bench" + (" (--quick)" if args.quick else "")
    if writes_whole(args):
        write_report(args.report, results, facts, sections, command)
    else:
        update_report(args.report, results, sections, command, facts[0].removeprefix("date: "))


if __name__ == "__main__":
    asyncio.run(main())
