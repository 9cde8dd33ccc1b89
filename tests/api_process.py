"""A real API process for the tests that need one (a paused Redis, the schema fuzzer): one
granian worker on a free loopback port, its output in a log file, stopped with its process
group however the test ends."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def granian_api(env: dict[str, str], port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    granian = str(Path(sys.executable).parent / "granian")
    command = [granian, "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--workers", "1", "api.app:app"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
