"""Child processes of the benchmark: its own Redis servers, API workers, the nginx gateway in
front of them, writers; each stopped when its `with` block ends, whatever happens inside. Also
what they cost: the CPU time of a process group, an API worker's confirmed orders."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from prometheus_client.parser import text_string_to_metric_families

from api.__main__ import APP

ROOT: Final = Path(__file__).resolve().parent.parent
BENCH_DIR: Final = ROOT / ".stack" / "bench"
VENV_BIN: Final = Path(sys.executable).parent
START_TIMEOUT_S: Final = 30.0
STOP_TIMEOUT_S: Final = 10.0
GATEWAY_SH: Final = ROOT / "ops" / "gateway.sh"
API_APP: Final = APP  # what the API's workers serve


@dataclass(frozen=True)
class Server:
    """A server the benchmark started: where it answers, and the process group it runs in (each
    is started in a session of its own, so the group holds its workers too)."""

    url: str
    pgid: int

    def cpu_s(self) -> float:
        return group_cpu_s(self.pgid)


def group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the processes of a process group: those alive,
    and those exited but not yet reaped (zombies keep their times)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):  # the process left since the listing
            # After the command name, which may hold spaces: state, ppid, pgrp, ... utime, stime.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def exited(pid: int) -> bool:
    """The process has exited: it is gone, or a zombie (exited, not yet reaped by its parent)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _wait(
    check: Callable[[], bool], what: str, log: Path, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited at start:\n{_log_tail(log)}")
        with contextlib.suppress(OSError):
            if check():
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start in {START_TIMEOUT_S}s:\n{_log_tail(log)}")


def _log_tail(log: Path) -> str:
    """A log's end, for an error; a process that fails before it opens its log leaves none (its
    error, or its wrapper's, went to stderr)."""
    try:
        return log.read_text()[-2000:]
    except FileNotFoundError:
        return f"(no {log}: see stderr)"


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def child(
    command: Sequence[str], log: Path, env: dict[str, str], *, append: bool = False
) -> Iterator[subprocess.Popen[bytes]]:
    """A child process run from the project's root with `env` over this process's environment,
    its output in `log`, in a session of its own so that its whole group is stopped when the
    block ends."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab" if append else "wb") as out:
        proc = subprocess.Popen(
            list(command),
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        stop(proc)


def redis_data_dir(port: int) -> Path:
    return BENCH_DIR / f"redis-{port}"


@contextlib.contextmanager
def redis_server(
    port: int, *, persistent: bool, extra: tuple[str, ...] = (), wrapper: tuple[str, ...] = ()
) -> Iterator[str]:
    """A fresh Redis on 127.0.0.1:port, in redis_data_dir(port); persistent = AOF everysec, as
    the stack runs it; `wrapper` runs it (a profiler and its options)."""
    data = redis_data_dir(port)
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    log = data / "redis.log"
    args = [
        *wrapper,
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data),
        "--save",
        "",
        "--logfile",
        str(log),
        "--maxmemory-policy",
        "noeviction",
    ]
    args += ["--appendonly", "yes", "--appendfsync", "everysec"] if persistent else []
    proc = subprocess.Popen([*args, *extra], start_new_session=True)
    ping = ["redis-cli", "-p", str(port), "ping"]
    _wait(
        lambda: subprocess.run(ping, capture_output=True).stdout.strip() == b"PONG",
        f"redis-server :{port}",
        log,
        proc,
    )
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(proc)
        shutil.rmtree(data, ignore_errors=True)


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as response:
        return bool(response.status == 200)


# Starts one worker serving an app (module:attribute) on a port, with this environment.
ServeApp = Callable[[str, int, dict[str, str]], contextlib.AbstractContextManager[Server]]


@contextlib.contextmanager
def asgi_worker(app: str, port: int, env: dict[str, str]) -> Iterator[Server]:
    """One worker serving `app` on 127.0.0.1:port, started as production starts the API's
    (`python -m api`: one process, its server and settings)."""
    cmd = [sys.executable, "-m", "api", "--port", str(port), "--app", app]
    with _served(cmd, app, port, env, "api") as server:
        yield server


@contextlib.contextmanager
def granian_worker(app: str, port: int, env: dict[str, str]) -> Iterator[Server]:
    """One granian worker (one process, uvloop) serving `app` on 127.0.0.1:port: the brief's
    server, for the benchmark's reference row only; the API does not run on it."""
    cmd = [str(VENV_BIN / "granian"), "--interface", "asgi", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--workers", "1", "--loop", "uvloop", "--no-ws", app]
    with _served(cmd, app, port, env, "granian") as server:
        yield server


@contextlib.contextmanager
def _served(
    cmd: list[str], app: str, port: int, env: dict[str, str], what: str
) -> Iterator[Server]:
    log = BENCH_DIR / f"{what}-{port}.log"
    base = f"http://127.0.0.1:{port}"
    probe = f"{base}/healthz" if app == API_APP else f"{base}/schema/openapi.json"
    with child(cmd, log, env) as proc:
        _wait(lambda: _http_ok(probe), f"{what} {app}", log, proc)
        yield Server(base, proc.pid)


@contextlib.contextmanager
def api_workers(count: int, base_port: int, env: dict[str, str]) -> Iterator[list[Server]]:
    """`count` API workers, one process each, on base_port+1 .. base_port+count: the ports
    `gateway(base_port, count)` balances over."""
    with contextlib.ExitStack() as stack:
        yield [
            stack.enter_context(asgi_worker(API_APP, base_port + i, env))
            for i in range(1, count + 1)
        ]


@contextlib.contextmanager
def gateway(port: int, workers: int, directory: Path | None = None) -> Iterator[Server]:
    """nginx as ops/gateway.sh runs it (ops/gateway/nginx.conf.template) on 127.0.0.1:port,
    balancing over `workers` API workers on port+1 .. port+workers; started once they answer
    through it, stopped (and gone, so the port is free again) when the block ends."""
    directory = directory or BENCH_DIR / f"gateway-{port}"
    env = {
        **os.environ,
        "GATEWAY_PORT": str(port),
        "API_BASE_PORT": str(port),
        "GATEWAY_DIR": str(directory),
    }
    started = subprocess.run(
        ["bash", str(GATEWAY_SH), "start", str(workers)], env=env, capture_output=True, text=True
    )
    if started.returncode != 0:
        raise RuntimeError(f"ops/gateway.sh start failed:\n{started.stderr[-2000:]}")
    # nginx daemonizes: its master is the leader of a new session, its workers in its group.
    master = int((directory / "nginx.pid").read_text())
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _http_ok(f"{url}/healthz"), "nginx gateway", directory / "error.log")
        yield Server(url, master)
    finally:
        subprocess.run(["bash", str(GATEWAY_SH), "stop"], env=env, capture_output=True)
        _wait_gone(master)


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def confirmed_orders(workers: Sequence[Server]) -> int:
    """Orders the API workers confirmed since they started: their own counters (GET /metrics,
    `orders_total{outcome="confirmed"}`), summed."""
    return sum(_confirmed_orders(worker.url) for worker in workers)


def _confirmed_orders(url: str) -> int:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "orders_total" and sample.labels.get("outcome") == "confirmed":
                return int(sample.value)
    raise RuntimeError(f"{url}/metrics has no orders_total{{outcome=confirmed}}")


@contextlib.contextmanager
def writers(env: dict[str, str], *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "writers", *extra]
    with child(command, BENCH_DIR / "writers.log", env, append=True) as proc:
        yield proc
