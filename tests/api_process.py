"""A real API process for the tests that need one (a paused Redis, the schema fuzzer, the gateway,
the live stock stream): one worker started as production starts it (`python -m api`), on a
loopback port, stopped with its process group however the test ends."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Final

from loadtest.processes import stop

ROOT: Final = Path(__file__).resolve().parent.parent


def api_command(port: int) -> list[str]:
    return [sys.executable, "-m", "api", "--host", "127.0.0.1", "--port", str(port)]


@contextlib.contextmanager
def api_process(
    env: dict[str, str], port: int, log: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """The worker's output goes to `log`, or nowhere."""
    with contextlib.ExitStack() as stack:
        out: IO[bytes] | int = (
            stack.enter_context(log.open("wb")) if log is not None else subprocess.DEVNULL
        )
        process = subprocess.Popen(
            api_command(port),
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        stop(process)
