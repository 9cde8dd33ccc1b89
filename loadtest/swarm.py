"""A Locust swarm on this machine: one master and N workers in distributed mode, headless, with
--csv, driving loadtest/locustfile.py against a host (the gateway); what it drove, read back from
the master's CSV files and log, and what its workers cost in CPU.

    python -m loadtest.swarm --host http://127.0.0.1:8080 --workers 2 --users 64 --seconds 30

A real swarm runs its workers on other machines (`locust --worker --master-host=...`); the CPU
each worker used per order says how many a target rate needs.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import subprocess
import time
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from loadtest import processes

LOCUSTFILE: Final = processes.ROOT / "loadtest" / "locustfile.py"
LOCUST: Final = str(processes.VENV_BIN / "locust")
MASTER_PORT: Final = 8420
# The master gives up (and the run fails) when its workers have not all connected by then.
CONNECT_TIMEOUT_S: Final = 30
# From starting the processes until every worker has connected (imports, connecting), here.
START_S: Final = 6
# After its time limit the master stops the users, collects the last reports and writes the CSVs.
STOP_MARGIN_S: Final = 30
# The locustfile's master writes <prefix>_workers.csv and takes this name from here: the other
# way round is not possible, since importing locust patches the whole process (gevent).
WORKERS_CSV_SUFFIX: Final = "_workers.csv"
ORDERS_ENTRY: Final = "POST /orders"
TOTAL_ENTRY: Final = "Aggregated"
CONNECTED: Final = re.compile(r"reported as ready\. (\d+) workers connected")


@dataclass(frozen=True)
class Entry:
    """One row of the master's <prefix>_stats.csv: one request name, or all of them."""

    requests: int
    failures: int
    per_s: float
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class Swarm:
    """What a swarm drove and what its workers cost."""

    workers: int
    users: int
    seconds: int
    entries: dict[str, Entry]  # by "METHOD name", and TOTAL_ENTRY
    by_worker: dict[str, int]  # requests each worker reported, by Locust's worker id
    connected: int  # the most workers the master saw connected
    worker_cpu_s: float  # CPU the workers used from the moment all had connected, together

    @property
    def total(self) -> Entry:
        return self.entries[TOTAL_ENTRY]

    @property
    def orders(self) -> Entry:
        return self.entries[ORDERS_ENTRY]

    def healthy(self) -> bool:
        """Every worker connected and sent requests, and none failed."""
        return (
            self.connected == self.workers
            and len(self.by_worker) == self.workers
            and all(n > 0 for n in self.by_worker.values())
            and self.total.failures == 0
        )

    def orders_per_worker_core(self) -> float:
        """Orders one worker sends per CPU-second it uses: its rate were it given a whole core."""
        return self.orders.requests / self.worker_cpu_s

    def workers_for(self, orders_per_s: float) -> int:
        return math.ceil(orders_per_s / self.orders_per_worker_core())


def run_swarm(
    host: str,
    out_dir: Path,
    *,
    workers: int = 2,
    users: int = 64,
    seconds: int = 30,
    env: dict[str, str] | None = None,
    master_port: int = MASTER_PORT,
) -> Swarm:
    """Runs the swarm for `seconds` once every worker has connected; all users start in the
    first second. Raises when the master writes no stats (it gave up waiting, or failed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = out_dir / "swarm"
    for stale in out_dir.glob(f"{prefix.name}_*.csv"):  # a failed run must not read the last's
        stale.unlink()
    log = out_dir / "master.log"
    environ = env or {}
    with ExitStack() as stack:
        master = stack.enter_context(
            _locust(log, environ, *_master_args(host, prefix, workers, users, seconds, master_port))
        )
        started = [
            stack.enter_context(
                _locust(
                    out_dir / f"worker-{i}.log",
                    environ,
                    *("--worker", "--master-host", "127.0.0.1", "--master-port", str(master_port)),
                )
            )
            for i in range(workers)
        ]
        connected_cpu_s = _cpu_once_connected(log, workers, started)
        master.wait(CONNECT_TIMEOUT_S + seconds + STOP_MARGIN_S)
        worker_cpu_s = sum(_cpu_at_exit(worker) for worker in started) - connected_cpu_s
    if not Path(f"{prefix}_stats.csv").exists():
        raise RuntimeError(f"the Locust master wrote no stats:\n{log.read_text()[-3000:]}")
    return Swarm(
        workers=workers,
        users=users,
        seconds=seconds,
        entries=_entries(Path(f"{prefix}_stats.csv")),
        by_worker=_worker_requests(Path(f"{prefix}{WORKERS_CSV_SUFFIX}")),
        connected=_connected(log),
        worker_cpu_s=worker_cpu_s,
    )


def _master_args(
    host: str, prefix: Path, workers: int, users: int, seconds: int, port: int
) -> tuple[str, ...]:
    return (
        "--master",
        "--headless",
        "--only-summary",
        "--host",
        host,
        "--users",
        str(users),
        "--spawn-rate",
        str(users),
        "--run-time",
        f"{seconds}s",
        "--csv",
        str(prefix),
        "--expect-workers",
        str(workers),
        "--expect-workers-max-wait",
        str(CONNECT_TIMEOUT_S),
        "--master-bind-host",
        "127.0.0.1",
        "--master-bind-port",
        str(port),
    )


def _locust(
    log: Path, env: dict[str, str], *args: str
) -> AbstractContextManager[subprocess.Popen[bytes]]:
    return processes.child([LOCUST, "-f", str(LOCUSTFILE), *args], log, env)


def _cpu_once_connected(log: Path, workers: int, started: list[subprocess.Popen[bytes]]) -> float:
    """The workers' CPU when the last of them connected: their start (imports, connecting) is
    not the swarm's cost per order."""
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while _connected(log) < workers and time.monotonic() < deadline:
        time.sleep(0.1)
    return sum(processes.group_cpu_s(worker.pid) for worker in started)


def _cpu_at_exit(worker: subprocess.Popen[bytes]) -> float:
    """A worker's CPU when it exits (the master tells it to): read while it is a zombie, i.e.
    exited but not yet reaped, whose /proc entry still holds its times."""
    deadline = time.monotonic() + STOP_MARGIN_S
    while not processes.exited(worker.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return processes.group_cpu_s(worker.pid)


def _connected(log: Path) -> int:
    return max((int(n) for n in CONNECTED.findall(log.read_text())), default=0)


def _entries(stats_csv: Path) -> dict[str, Entry]:
    with stats_csv.open(newline="") as rows:
        return {
            f"{row['Type']} {row['Name']}".strip(): Entry(
                requests=int(row["Request Count"]),
                failures=int(row["Failure Count"]),
                per_s=float(row["Requests/s"]),
                p50_ms=_ms(row["50%"]),
                p99_ms=_ms(row["99%"]),
            )
            for row in csv.DictReader(rows)
        }


def _ms(value: str) -> float:
    return float(value) if value not in ("", "N/A") else math.nan


def _worker_requests(workers_csv: Path) -> dict[str, int]:
    if not workers_csv.exists():
        return {}
    with workers_csv.open(newline="") as rows:
        return {row["worker"]: int(row["requests"]) for row in csv.DictReader(rows)}


def report_lines(swarm: Swarm, target_per_s: float) -> list[str]:
    """The Swarm section of BENCHMARKS.md."""
    cpu_cores = swarm.worker_cpu_s / swarm.seconds
    per_core = swarm.orders_per_worker_core()
    requests_per_order = swarm.total.requests / swarm.orders.requests
    lines = [
        f"Locust in distributed mode on this machine (loadtest/swarm.py): one master and "
        f"{swarm.workers} workers, headless, `--csv`, {swarm.users} users (FastHttpUser, no "
        f"think time) started in the first second, for {swarm.seconds} s, through the nginx "
        "gateway to 2 API workers. The locustfile's mix: 20 orders (each with its own "
        "Idempotency-Key) to 3 stock reads and 1 order read. The Locust workers, the API "
        "workers, nginx and Redis share the 2 cores, so the rates are what this machine gives "
        "all of them at once; the CPU each Locust worker used per order is what sizes a swarm.",
        "",
        "| what | measured |",
        "|---|---|",
        f"| workers connected (the master's log) | {swarm.connected} of {swarm.workers} |",
        f"| requests, all / failures | {swarm.total.requests:,} ({swarm.total.per_s:,.0f} /s) / "
        f"{swarm.total.failures:,} |",
    ]
    lines += [
        f"| {name} | {entry.requests:,} ({entry.per_s:,.0f} /s), {entry.failures:,} failures, "
        f"p50 {entry.p50_ms:.0f} ms, p99 {entry.p99_ms:.0f} ms |"
        for name, entry in swarm.entries.items()
        if name != TOTAL_ENTRY
    ]
    lines += [
        "| requests by worker (the master's `swarm_workers.csv`) | "
        + ", ".join(f"{n:,} ({n / swarm.seconds:,.0f} /s)" for n in swarm.by_worker.values())
        + " |",
        f"| Locust workers' CPU, from all connected to their exit | {swarm.worker_cpu_s:.1f} "
        f"CPU-seconds in {swarm.seconds} s ({cpu_cores:.2f} of the 2 cores) |",
        f"| orders per Locust worker CPU-second | {per_core:,.0f}: with a core to itself, one "
        f"worker drives {per_core:,.0f} orders/s ({per_core * requests_per_order:,.0f} "
        "requests/s of this mix) |",
        f"| **a swarm for {target_per_s:,.0f} orders/s (computed, not measured)** | "
        f"**{swarm.workers_for(target_per_s)} workers** of one core each "
        f"({target_per_s:,.0f} / {per_core:,.0f}, rounded up), plus the master |",
    ]
    return lines


def summary(swarm: Swarm) -> str:
    total, orders = swarm.total, swarm.orders
    return (
        f"{swarm.connected} of {swarm.workers} workers connected, {swarm.users} users, "
        f"{swarm.seconds} s: {total.requests:,} requests ({total.per_s:,.0f} /s), "
        f"{total.failures:,} failures; POST /orders {orders.requests:,} ({orders.per_s:,.0f} /s, "
        f"p50 {orders.p50_ms:.0f} ms, p99 {orders.p99_ms:.0f} ms); by worker "
        + ", ".join(f"{n:,}" for n in swarm.by_worker.values())
        + f"; workers' CPU {swarm.worker_cpu_s:.1f} s = "
        f"{swarm.orders_per_worker_core():,.0f} orders per worker CPU-second"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="http://127.0.0.1:8080", help="the gateway")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--out", type=Path, default=processes.BENCH_DIR / "swarm")
    args = parser.parse_args()
    swarm = run_swarm(
        args.host, args.out, workers=args.workers, users=args.users, seconds=args.seconds
    )
    print(summary(swarm))
    print(f"CSV files: {args.out}/swarm_*.csv")


if __name__ == "__main__":
    main()
