"""Child processes of the benchmark: its own Redis servers, API workers, writers; each stopped
when its `with` block ends, whatever happens inside."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
BENCH_DIR: Final = ROOT / ".stack" / "bench"
VENV_BIN: Final = Path(sys.executable).parent
START_TIMEOUT_S: Final = 30.0


def _wait(check: object, what: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited at start:\n{log.read_text()[-2000:]}")
        try:
            if check():  # type: ignore[operator]
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start in {START_TIMEOUT_S}s:\n{log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def redis_server(port: int, *, persistent: bool, extra: tuple[str, ...] = ()) -> Iterator[str]:
    """A fresh Redis on 127.0.0.1:port; persistent = AOF everysec, as the stack runs it."""
    data = BENCH_DIR / f"redis-{port}"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    log = data / "redis.log"
    args = [
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
        proc,
        log,
    )
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop(proc)
        shutil.rmtree(data, ignore_errors=True)


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as response:
        return bool(response.status == 200)


@contextlib.contextmanager
def asgi_worker(app: str, port: int, env: dict[str, str]) -> Iterator[str]:
    """One granian worker (one process, uvloop) serving `app` on 127.0.0.1:port."""
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    log = BENCH_DIR / f"granian-{port}.log"
    cmd = [
        str(VENV_BIN / "granian"),
        "--interface",
        "asgi",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--loop",
        "uvloop",
        "--no-ws",
        app,
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    probe = f"{base}/healthz" if app.startswith("api.") else f"{base}/schema/openapi.json"
    _wait(lambda: _http_ok(probe), f"granian {app}", proc, log)
    try:
        yield base
    finally:
        _stop(proc)


@contextlib.contextmanager
def writers(env: dict[str, str], *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    log = BENCH_DIR / "writers.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "writers", *extra],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        _stop(proc)
