"""The open-loop driver (loadtest/ratedriver, Go) against a small HTTP server in this process:
every scheduled request is answered, refused by the server, failed or dropped, and counted once;
keys go out on the share asked for; latency is counted from the schedule, a queue included."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

import pytest

from loadtest.bench import build_ratedriver

UUID_SHAPE: Final = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class Seen:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.keys: list[str] = []
        self.bodies: list[bytes] = []


def _server(seen: Seen, stall_s: float, close_every: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the API's server answers

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with seen.lock:
                seen.requests += 1
                number = seen.requests
                seen.bodies.append(body)
                if key := self.headers.get("Idempotency-Key"):
                    seen.keys.append(key)
            time.sleep(stall_s)
            status = 503 if number % 5 == 0 else 201
            answer = b'{"status":"confirmed"}' if status == 201 else b'{"error":"busy"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            if close_every and number % close_every == 0:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    return server


@pytest.fixture(scope="module")
def driver() -> Path:
    return build_ratedriver()


@pytest.fixture
def bodies(tmp_path: Path) -> Path:
    path = tmp_path / "bodies.jsonl"
    path.write_text('{"productId":"sku-1"}\n\n{"productId":"sku-2"}\n')
    return path


@contextlib.contextmanager
def _serving(seen: Seen, stall_s: float = 0.0, close_every: int = 0) -> Iterator[str]:
    server = _server(seen, stall_s, close_every)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/orders"
    finally:
        server.shutdown()
        server.server_close()


def _drive(driver: Path, url: str, bodies: Path, *args: str) -> tuple[dict[str, Any], str]:
    """The driver's report, and what it said on stderr."""
    run = subprocess.run(
        [str(driver), "-url", url, "-bodies", str(bodies), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(run.stdout), run.stderr


def _accounted(report: dict[str, Any]) -> int:
    return int(report["completed"]) + int(report["errors"]) + int(report["dropped"])


def test_every_request_is_answered_and_counted_once_with_keys_on_its_share(
    driver: Path, bodies: Path
) -> None:
    seen = Seen()
    with _serving(seen, close_every=7) as url:  # every 7th answer closes its connection
        report, _ = _drive(
            driver, url, bodies, "-rate", "400", "-duration", "1s", "-connections", "4",
            "-idempotency-share", "0.25",
        )  # fmt: skip
    assert report["sent"] == 400 and _accounted(report) == 400
    assert report["errors"] == 0 and report["dropped"] == 0
    assert report["status_counts"] == {"201": 320, "503": 80}
    assert seen.requests == 400
    assert len(seen.keys) == 100 and len(set(seen.keys)) == 100
    assert all(UUID_SHAPE.match(key) for key in seen.keys)
    assert set(seen.bodies) == {b'{"productId":"sku-1"}', b'{"productId":"sku-2"}'}
    assert 0 < report["latency_ms"]["p50"] <= report["latency_ms"]["p99"]


def test_a_stalling_server_is_charged_its_queue_and_the_excess_is_dropped(
    driver: Path, bodies: Path
) -> None:
    """Two connections at 0.2 s an answer carry 10 requests/s: at 50/s the rest queues in the
    driver, its wait counted, until 6 wait; past that, requests are dropped and counted."""
    seen = Seen()
    with _serving(seen, stall_s=0.2) as url:
        report, _ = _drive(
            driver, url, bodies, "-rate", "50", "-duration", "1s", "-connections", "2",
            "-in-flight", "6",
        )  # fmt: skip
    assert report["sent"] == 50 and _accounted(report) == 50
    assert report["dropped"] > 0
    assert report["completed"] == seen.requests
    # The last of 6 in flight waited for the 5 before it, 2 at a time: ~0.6 s, not 0.2.
    assert report["latency_ms"]["max"] >= 500


def test_a_server_that_is_not_there_is_counted_as_errors(driver: Path, bodies: Path) -> None:
    report, said = _drive(driver, _nobody_listening(), bodies, "-rate", "20", "-duration", "1s")
    assert report["sent"] == 20 and report["errors"] == 20 and report["completed"] == 0
    assert "20 requests without an answer" in said and "refused" in said


@pytest.mark.parametrize(
    "args", [["-rate", "0"], ["-connections", "0"], ["-in-flight", "-1"], ["-url", "https://x/"]]
)
def test_arguments_it_cannot_run_with_are_refused(
    driver: Path, bodies: Path, args: list[str]
) -> None:
    run = subprocess.run(
        [str(driver), "-bodies", str(bodies), *args], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2 and run.stdout == ""


def _nobody_listening() -> str:
    """A URL on a port that was free a moment ago: bound, then let go."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/orders"
