"""The nginx gateway balances over separate API worker processes, routes around a dead one, and
answers every error it produces itself (413, 400, 404, 502, 504) in the API's one JSON error shape;
bad input sent through it gets the API's own JSON errors.

nginx is installed by the project's setup (`ops/stack.sh install`, which `make test` runs, or
`ops/gateway.sh install`): these tests fail rather than skip without it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest

from engine.ids import new_id
from stores.settings import Settings
from tests.api_process import api_command
from tests.conftest import TEST_SETTINGS, store_env

ROOT: Final = Path(__file__).resolve().parent.parent
GATEWAY_SH: Final = ["bash", str(ROOT / "ops" / "gateway.sh")]
WORKERS: Final = 2
START_TIMEOUT_S: Final = 30.0
# Each gateway of this module on its own port; its workers (real or not) on the next two.
FAILOVER_PORT: Final = 8190
LIVE_PORT: Final = 8290
NO_WORKER_PORT: Final = 8390
SILENT_WORKER_PORT: Final = 8490
JSON_TYPE: Final = {"Content-Type": "application/json"}
PARIS: Final = {"lat": 48.8566, "lon": 2.3522}


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict[str, Any]:
        """The one error shape, checked: a JSON object {"error": {"code", "message", ...}}."""
        assert self.content_type.startswith("application/json"), (self.content_type, self.body)
        parsed = json.loads(self.body)
        assert set(parsed) == {"error"}, parsed
        assert isinstance(parsed["error"]["code"], str) and parsed["error"]["message"], parsed
        error: dict[str, Any] = parsed["error"]
        return error


def send(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """One request with the path sent exactly as given (no client-side normalising or quoting)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders()
        if body is not None:
            with contextlib.suppress(ConnectionError):  # nginx may refuse before reading it all
                connection.send(body)
        response = connection.getresponse()
        return Reply(
            response.status,
            response.getheader("Content-Type", ""),
            {name.lower(): value for name, value in response.getheaders()},
            response.read(),
        )
    finally:
        connection.close()


@contextlib.contextmanager
def gateway_on(port: int, directory: Path, **env: str) -> Iterator[None]:
    """nginx on `port`, balancing over workers on port+1 and port+2 (whatever listens there)."""
    environ = {
        **os.environ,
        "GATEWAY_PORT": str(port),
        "API_BASE_PORT": str(port),
        "GATEWAY_DIR": str(directory),
        **env,
    }
    subprocess.run([*GATEWAY_SH, "start", str(WORKERS)], env=environ, check=True)
    try:
        yield
    finally:
        subprocess.run([*GATEWAY_SH, "stop"], env=environ, check=False)


@contextlib.contextmanager
def api_workers(settings: Settings, base_port: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    workers = [
        subprocess.Popen(
            api_command(base_port + i),
            cwd=ROOT,
            env=store_env(settings),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for i in range(1, WORKERS + 1)
    ]
    try:
        yield workers
    finally:
        for worker in workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()


def wait_until_healthy(port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        with contextlib.suppress(OSError):
            if all(send(port, "GET", "/healthz").status == 200 for _ in range(WORKERS * 2)):
                return
        assert time.monotonic() < deadline, "the workers did not answer through the gateway"
        time.sleep(0.3)


@pytest.fixture
def gateway(settings: Settings, tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    with api_workers(settings, FAILOVER_PORT) as workers, gateway_on(FAILOVER_PORT, tmp_path):
        wait_until_healthy(FAILOVER_PORT)
        yield workers


@pytest.fixture(scope="module")
def live_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """Two workers behind the gateway, left running for the module's read-only requests (none of
    them reaches a store's data)."""
    with (
        api_workers(TEST_SETTINGS, LIVE_PORT),
        gateway_on(LIVE_PORT, tmp_path_factory.mktemp("gateway")),
    ):
        wait_until_healthy(LIVE_PORT)
        yield LIVE_PORT


def test_requests_succeed_through_the_gateway_after_a_worker_dies(
    gateway: list[subprocess.Popen[bytes]],
) -> None:
    assert send(FAILOVER_PORT, "GET", "/nowhere").status == 404  # only the service areas route

    os.killpg(gateway[0].pid, signal.SIGKILL)
    gateway[0].wait()
    assert [send(FAILOVER_PORT, "GET", "/healthz").status for _ in range(20)] == [200] * 20
    assert send(FAILOVER_PORT, "GET", "/readyz").status == 200


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        # Over nginx's own limit (64 KiB): refused by nginx before any worker sees it.
        ("POST", "/orders", b"{" + b" " * 1_000_000 + b"}", 413, "body_too_large"),
        ("GET", "/orders/%00", None, 400, "bad_request"),
        ("GET", "/orders/../../etc/passwd", None, 400, "bad_request"),
        ("GET", "/../orders", None, 400, "bad_request"),
        ("GET", "/orders/%2e%2e/%2e%2e/x", None, 400, "bad_request"),
        ("GET", "/nowhere", None, 404, "not_found"),
        ("GET", "/", None, 404, "not_found"),
    ],
    ids=[
        "1mb-body",
        "nul-in-path",
        "dot-dot",
        "dot-dot-at-root",
        "encoded-dot-dot",
        "no-route",
        "root",
    ],
)
def test_the_gateways_own_errors_are_json(
    live_gateway: int, method: str, path: str, body: bytes | None, status: int, code: str
) -> None:
    reply = send(live_gateway, method, path, body, JSON_TYPE if body is not None else None)
    assert reply.status == status, reply
    assert reply.error()["code"] == code


def order(**changes: Any) -> bytes:
    return json.dumps(
        {"productId": "sku-1", "quantity": 1, "customerLocation": PARIS} | changes
    ).encode()


ORDER_ID: Final = new_id(3)
DEEP: Final = b'{"productId": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"
RESERVE_STRING: Final = b'{"productId": "sku-1", "warehouseId": "w", "quantity": "2"}'


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "code"),
    [
        ("POST", "/orders", order(quantity="1"), JSON_TYPE, 400, "validation_error"),
        ("POST", "/orders", order(customerLocation={"lat": "48", "lon": 2}), JSON_TYPE, 400,
         "validation_error"),
        ("POST", "/orders", b'{"productId": "sku-1", "quantity": 5000, "quantity": 1, '
         b'"customerLocation": {"lat": 48.8, "lon": 2.3}}', JSON_TYPE, 400, "malformed_json"),
        ("POST", "/orders", DEEP, JSON_TYPE, 400, "malformed_json"),
        ("POST", "/orders", order(productId="sku-\udcff").replace(b"\\udcff", b"\xff"), JSON_TYPE,
         400, "malformed_json"),
        ("POST", "/orders", order() + b" trailing", JSON_TYPE, 400, "malformed_json"),
        ("POST", "/orders", order(), {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        ("POST", "/orders", b"productId=sku-1&quantity=1",
         {"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
        ("POST", "/inventory/reserve", RESERVE_STRING, JSON_TYPE, 400, "validation_error"),
        ("PUT", "/inventory/sku-1/stock/w", b'{"quantity": "5"}', JSON_TYPE, 400,
         "validation_error"),
        # Between the API's limit (16 KiB) and nginx's: the API's own 413.
        ("POST", "/orders", b"{" + b" " * 20_000 + b"}", JSON_TYPE, 413, "body_too_large"),
        ("GET", f"/orders/{ORDER_ID.upper()}", None, {}, 404, "order_not_found"),
        ("GET", f"/orders/{ORDER_ID.replace('-', '')}", None, {}, 404, "order_not_found"),
        ("GET", f"/orders/%7B{ORDER_ID}%7D", None, {}, 404, "order_not_found"),
        ("GET", f"/orders/urn:uuid:{ORDER_ID}", None, {}, 404, "order_not_found"),
        ("POST", f"/orders/{ORDER_ID.upper()}/cancel", None, {}, 404, "order_not_found"),
    ],
    ids=[
        "quantity-string", "lat-string", "duplicate-key", "deep-nesting", "invalid-utf8",
        "trailing-garbage", "text-plain", "form", "reserve-quantity-string", "stock-string",
        "over-api-limit", "upper-case-id", "unhyphenated-id", "braced-id", "urn-id", "cancel-upper",
    ],
)  # fmt: skip
def test_bad_input_through_the_gateway_gets_the_apis_json_errors(
    live_gateway: int,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    reply = send(live_gateway, method, path, body, headers)
    assert reply.status == status, reply
    assert reply.error()["code"] == code


def test_a_gateway_without_a_live_worker_answers_502_in_json(tmp_path: Path) -> None:
    # Nothing listens on the workers' ports: every connection is refused.
    with gateway_on(NO_WORKER_PORT, tmp_path):
        for method, path in (("GET", "/healthz"), ("POST", "/orders")):
            body = order() if method == "POST" else None
            reply = send(NO_WORKER_PORT, method, path, body, JSON_TYPE)
            assert reply.status == 502, reply
            assert reply.error()["code"] == "bad_gateway"
            assert reply.headers["retry-after"] == "1"


@contextlib.contextmanager
def silent_workers(base_port: int) -> Iterator[None]:
    """Workers that take connections and requests and never answer."""
    listeners = []
    for i in range(1, WORKERS + 1):
        listener = socket.create_server(("127.0.0.1", base_port + i))
        listeners.append(listener)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept(listener: socket.socket) -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(listener.accept()[0])

    threads = [threading.Thread(target=accept, args=(lsn,), daemon=True) for lsn in listeners]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        for sock in [*held, *listeners]:
            sock.close()


def test_a_worker_that_does_not_answer_in_time_gets_a_504_in_json(tmp_path: Path) -> None:
    with (
        silent_workers(SILENT_WORKER_PORT),
        gateway_on(SILENT_WORKER_PORT, tmp_path, GATEWAY_READ_TIMEOUT_S="1"),
    ):
        reply = send(SILENT_WORKER_PORT, "POST", "/orders", order(), JSON_TYPE)
        assert reply.status == 504, reply
        error = reply.error()
        assert error["code"] == "gateway_timeout" and "Idempotency-Key" in error["message"]
        assert reply.headers["retry-after"] == "1"
