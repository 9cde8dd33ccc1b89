"""The nginx gateway balances over separate API worker processes and routes around a dead one."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from stores.settings import Settings
from tests.conftest import store_env

ROOT: Final = Path(__file__).resolve().parent.parent
GATEWAY_PORT: Final = 8190
API_BASE_PORT: Final = 8190  # workers on 8191, 8192
WORKERS: Final = 2
START_TIMEOUT_S: Final = 30.0

pytestmark = pytest.mark.skipif(
    shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists(),
    reason="nginx is not installed (ops/gateway.sh installs it)",
)


def get(path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{GATEWAY_PORT}{path}", timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def gateway(settings: Settings, tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    env = {
        **store_env(settings),
        "GATEWAY_PORT": str(GATEWAY_PORT),
        "API_BASE_PORT": str(API_BASE_PORT),
        "GATEWAY_DIR": str(tmp_path),
    }
    granian = str(Path(sys.executable).parent / "granian")
    workers = [
        subprocess.Popen(
            [
                granian,
                "--interface",
                "asgi",
                "--host",
                "127.0.0.1",
                "--port",
                str(API_BASE_PORT + i),
                "--workers",
                "1",
                "api.app:app",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for i in range(1, WORKERS + 1)
    ]
    gateway_sh = ["bash", str(ROOT / "ops" / "gateway.sh")]
    try:
        subprocess.run([*gateway_sh, "start", str(WORKERS)], env=env, check=True)
        yield workers
    finally:
        subprocess.run([*gateway_sh, "stop"], env=env, check=False)
        for worker in workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()


def test_requests_succeed_through_the_gateway_after_a_worker_dies(
    gateway: list[subprocess.Popen[bytes]],
) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not all(get("/healthz") == 200 for _ in range(WORKERS * 2)):
        assert time.monotonic() < deadline, "the workers did not answer through the gateway"
        time.sleep(0.3)
    assert get("/nowhere") == 404  # the gateway routes only the service areas

    os.killpg(gateway[0].pid, signal.SIGKILL)
    gateway[0].wait()
    assert [get("/healthz") for _ in range(20)] == [200] * 20
    assert get("/readyz") == 200
