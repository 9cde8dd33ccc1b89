"""POST /orders answered by the HTTP protocol itself (api.order_protocol), on a real worker
started as production starts it, over raw sockets: the same bytes as the app's ASGI front gives
(which tests/test_order_intake.py holds to Litestar's route), and the connection behaving as for
any request: keep-alive, pipelining, Connection: close, HTTP/1.0, 100-continue, a chunked body, a
client that goes away before its answer, and a graceful shutdown with an order in flight. Every
test ends with the ledger: the units taken are the units of the orders that exist."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import httpx
import msgspec
import pytest
import uvicorn

from api.__main__ import server_options
from api.app import MAX_BODY_BYTES, FulfillmentApi, create_app
from api.auth import ApiKeys
from api.order_intake import IntakeAnswer, OrderHeaders
from engine import keys
from stores.mongo import MongoDatabase
from stores.redis import RedisClient
from stores.settings import Settings
from tests.api_process import api_process
from tests.conftest import scan_keys, store_env
from tests.notice_servers import free_port
from tests.test_exactly_once import redis_paused, redis_pid_holding, wait_healthy
from tests.test_order_intake import KEYS, REFUSED, SHOP, body

ANSWER_TIMEOUT_S: Final = 10.0
# Shorter than REDIS_SOCKET_TIMEOUT_S and the cluster's node timeout: the order waits, nothing
# fails over or times out.
PAUSE_S: Final = 0.5
STOCK: Final = 20  # as in tests/test_order_intake.py, whose refusals include running out
OPS: Final = {"x-api-key": "key-ops"}
SKU_1_STOCK: Final = keys.stock(keys.partition_of_product("sku-1"), "sku-1")


class Worker(msgspec.Struct):
    port: int
    process: subprocess.Popen[bytes]
    log: Path


class Answer(msgspec.Struct):
    status: int
    headers: list[tuple[str, str]]  # in order, names in lower case, without the date
    body: bytes

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name), None)


@pytest.fixture
async def worker(
    settings: Settings, redis: RedisClient, mongo: MongoDatabase, tmp_path: Path
) -> AsyncIterator[Worker]:
    port, log = free_port(), tmp_path / "api.log"
    env = {**store_env(settings), "API_KEYS": json.dumps(KEYS), "API_KEYS_FILE": ""}
    with api_process(env, port, log) as process:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=ANSWER_TIMEOUT_S) as http:
            await wait_healthy(http, process, log)
            await open_shop(http)
        assert "POST /orders is answered by the HTTP protocol" in log.read_text()
        yield Worker(port, process, log)
    errors = [line for line in log.read_text().splitlines() if '"level":"ERROR"' in line]
    assert not errors, "the API logged errors:\n" + "\n".join(errors[:5])


async def open_shop(http: httpx.AsyncClient) -> None:
    """A warehouse in Paris holding STOCK units of sku-1."""
    location = {"lat": 48.86, "lon": 2.35}
    warehouse = {"warehouseId": "paris", "name": "Paris", "location": location}
    assert (await http.post("/warehouses", json=warehouse, headers=OPS)).status_code == 201
    put = await http.put("/inventory/sku-1/stock/paris", json={"quantity": STOCK}, headers=OPS)
    assert put.status_code == 200


def request(
    path: str,
    headers: dict[str, str],
    content: bytes,
    *,
    method: str = "POST",
    version: str = "1.1",
) -> bytes:
    """One request's bytes, with its Content-Length unless `headers` says how the body comes."""
    lines = [f"{method} {path} HTTP/{version}", "host: test"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if "transfer-encoding" not in headers and "content-length" not in headers:
        lines.append(f"content-length: {len(content)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + content


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), ANSWER_TIMEOUT_S)
    status_line, *lines = head.decode("latin-1").removesuffix("\r\n\r\n").split("\r\n")
    version, status, _ = status_line.split(" ", 2)
    assert version == "HTTP/1.1"
    headers = []
    for line in lines:
        name, _, value = line.partition(":")
        if name.lower() != "date":
            headers.append((name.lower(), value.strip()))
    length = int(next(value for name, value in headers if name == "content-length"))
    content = await asyncio.wait_for(reader.readexactly(length), ANSWER_TIMEOUT_S)
    return Answer(int(status), headers, content)


@contextlib.asynccontextmanager
async def connection(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def exchange(port: int, raw: bytes) -> Answer:
    async with connection(port) as (reader, writer):
        writer.write(raw)
        return await read_answer(reader)


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    return await asyncio.wait_for(reader.read(1), ANSWER_TIMEOUT_S) == b""


async def ledger(redis: RedisClient) -> tuple[int, int]:
    """(units taken from sku-1's stock, units of sku-1's orders that exist), read in Redis."""
    level = int(str(await redis.hget(SKU_1_STOCK, "paris")))
    ordered = 0
    for key in await scan_keys(redis, "order:*"):
        record = json.loads(str(await redis.get(key)))
        if record[0] == "sku-1":
            ordered += record[2]
    return STOCK - level, ordered


# The ASGI front takes POST /orders when the protocol does not: here, a query string.
THROUGH_ASGI: Final = "?"


async def test_refusals_are_the_asgi_fronts(worker: Worker, redis: RedisClient) -> None:
    for name, path, headers, content in REFUSED:
        ours = await exchange(worker.port, request(path, headers, content))
        theirs = await exchange(worker.port, request(path + THROUGH_ASGI, headers, content))
        assert ours == theirs, name
        assert 400 <= ours.status < 500, name
    assert await ledger(redis) == (0, 0)


async def test_a_placed_order_and_its_replays_are_the_asgi_fronts(
    worker: Worker, redis: RedisClient
) -> None:
    keyed = {**SHOP, "content-type": "application/json", "idempotency-key": "cart-1"}
    placed = await exchange(worker.port, request("/orders", keyed, body(quantity=2)))
    assert placed.status == 201
    assert placed.headers[:2] == [
        ("content-type", "application/json"),
        ("content-length", str(len(placed.body))),
    ]
    assert placed.header("idempotent-replayed") is None
    replays = [
        await exchange(worker.port, request(path, keyed, body(quantity=2)))
        for path in ("/orders", "/orders" + THROUGH_ASGI)
    ]
    assert replays[0] == replays[1]
    assert replays[0].body == placed.body
    assert replays[0].header("idempotent-replayed") == "true"
    assert await ledger(redis) == (2, 2)


async def test_pipelined_requests_are_answered_in_order_on_one_connection(
    worker: Worker, redis: RedisClient
) -> None:
    """Orders the protocol answers, an order through ASGI and another route, sent in one write:
    each answered once, in the order sent, the connection kept open for more."""
    sent = [
        request("/orders", SHOP, body()),
        request("/healthz", {}, b"", method="GET"),
        request("/orders/", SHOP, body(quantity=2)),
        request("/orders" + THROUGH_ASGI, SHOP, body(quantity=3)),
        request("/orders", SHOP, body(quantity=4)),
    ]
    async with connection(worker.port) as (reader, writer):
        writer.write(b"".join(sent))
        answers = [await read_answer(reader) for _ in sent]
        assert [a.status for a in answers] == [201, 200, 201, 201, 201]
        writer.write(request("/orders", SHOP, body()))
        assert (await read_answer(reader)).status == 201
    order_ids = {json.loads(a.body)["orderId"] for a in answers if a.status == 201}
    assert len(order_ids) == 4
    assert await ledger(redis) == (11, 11)


@pytest.mark.parametrize(
    ("version", "headers"),
    [("1.1", {**SHOP, "connection": "close"}), ("1.0", SHOP)],
    ids=["connection close", "HTTP/1.0"],
)
async def test_a_connection_that_ends_with_its_order_is_closed_after_the_answer(
    worker: Worker, redis: RedisClient, version: str, headers: dict[str, str]
) -> None:
    async with connection(worker.port) as (reader, writer):
        writer.write(request("/orders", headers, body(), version=version))
        answer = await read_answer(reader)
        assert answer.status == 201
        assert answer.header("connection") == "close"
        assert await closed_by_server(reader)
    assert await ledger(redis) == (1, 1)


async def test_bodies_the_protocol_leaves_to_asgi_are_placed_as_well(
    worker: Worker, redis: RedisClient
) -> None:
    async with connection(worker.port) as (reader, writer):
        content = body(quantity=2)
        writer.write(
            request("/orders", {**SHOP, "expect": "100-continue"}, content)[: -len(content)]
        )
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), ANSWER_TIMEOUT_S) == (
            b"HTTP/1.1 100 Continue\r\n\r\n"
        )
        writer.write(content)
        assert (await read_answer(reader)).status == 201
        chunked = body(quantity=3)
        halves = (chunked[:10], chunked[10:])
        framed = b"".join(b"%x\r\n%s\r\n" % (len(h), h) for h in halves) + b"0\r\n\r\n"
        writer.write(request("/orders", {**SHOP, "transfer-encoding": "chunked"}, framed))
        assert (await read_answer(reader)).status == 201
    both = {**SHOP, "transfer-encoding": "chunked", "content-length": "5"}
    async with connection(worker.port) as (reader, writer):
        writer.write(request("/orders", both, b"5\r\n{}{}{\r\n0\r\n\r\n"))
        refused = await asyncio.wait_for(reader.read(), ANSWER_TIMEOUT_S)
        assert refused.startswith(b"HTTP/1.1 400 ")
    assert await ledger(redis) == (5, 5)


async def test_orders_whose_clients_went_away_are_placed_once_and_the_worker_serves_on(
    worker: Worker, redis: RedisClient
) -> None:
    """Redis paused while three clients send an order each and hang up: the orders were sent to
    Redis, so they stand once it resumes; their answers are written to no one, and the worker
    keeps serving."""
    pid = await redis_pid_holding(redis, SKU_1_STOCK)
    with redis_paused(pid):
        for quantity in (1, 2, 3):
            async with connection(worker.port) as (_, writer):
                writer.write(request("/orders", SHOP, body(quantity=quantity)))
                await writer.drain()
        await asyncio.sleep(PAUSE_S)
    assert (await exchange(worker.port, request("/orders", SHOP, body(quantity=4)))).status == 201
    assert await ledger(redis) == (10, 10)


async def test_a_graceful_shutdown_waits_for_an_order_whose_client_went_away(
    worker: Worker, redis: RedisClient
) -> None:
    """Stopped while an order whose client hung up waits on a paused Redis: the worker exits
    cleanly, logs no error, and the order stands once, its units taken."""
    pid = await redis_pid_holding(redis, SKU_1_STOCK)
    with redis_paused(pid):
        async with connection(worker.port) as (_, writer):
            writer.write(request("/orders", SHOP, body(quantity=3)))
            await writer.drain()
        await asyncio.sleep(PAUSE_S / 2)
        worker.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(PAUSE_S / 2)
    exit_status = await asyncio.to_thread(worker.process.wait, ANSWER_TIMEOUT_S)
    assert exit_status in (0, -signal.SIGTERM)
    assert await redis.hget(SKU_1_STOCK, "paris") == str(STOCK - 3)
    records = [json.loads(str(await redis.get(key))) for key in await scan_keys(redis, "order:*")]
    assert [record[2] for record in records] == [3]


async def test_a_graceful_shutdown_answers_the_order_in_flight_then_closes(
    worker: Worker, redis: RedisClient
) -> None:
    pid = await redis_pid_holding(redis, SKU_1_STOCK)
    async with connection(worker.port) as (reader, writer):
        with redis_paused(pid):
            writer.write(request("/orders", SHOP, body(quantity=2)))
            await writer.drain()
            await asyncio.sleep(PAUSE_S / 2)
            worker.process.send_signal(signal.SIGTERM)
            await asyncio.sleep(PAUSE_S / 2)
        answer = await read_answer(reader)
        assert answer.status == 201
        assert answer.header("connection") == "close"
        assert await closed_by_server(reader)
    # uvicorn ends a graceful shutdown by raising the signal it caught again.
    exit_status = await asyncio.to_thread(worker.process.wait, ANSWER_TIMEOUT_S)
    assert exit_status in (0, -signal.SIGTERM)
    order_id = json.loads(answer.body)["orderId"]
    keys = [key for key in await scan_keys(redis, "order:*") if key.endswith(order_id)]
    assert len(keys) == 1
    assert await redis.hget(SKU_1_STOCK, "paris") == str(STOCK - 2)


class InProcess(msgspec.Struct):
    """The app served in this process, as `python -m api` serves it but for the logging, with
    every call of the intake's protocol entry counted, and made to fail on demand."""

    port: int
    by_protocol: list[str]
    failing: list[bool]


@pytest.fixture
async def in_process(
    settings: Settings, redis: RedisClient, mongo: MongoDatabase, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[InProcess]:
    app = create_app(settings, api_keys=ApiKeys.parse(json.dumps(KEYS)))
    assert isinstance(app, FulfillmentApi)
    served = InProcess(free_port(), [], [False])
    answer = app.order_intake.answer

    async def counted(headers: OrderHeaders, raw: bytes, path: str) -> IntakeAnswer:
        served.by_protocol.append(path)
        if served.failing[0]:
            raise RuntimeError("a fault of the protocol's own")
        return await answer(headers, raw, path)

    monkeypatch.setattr(app.order_intake, "answer", counted)
    options = {**server_options(), "log_config": None, "log_level": "warning"}
    server = uvicorn.Server(uvicorn.Config(app, port=served.port, **options))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not serving.done(), "the server did not start"
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{served.port}") as http:
            await open_shop(http)
        yield served
    finally:
        server.should_exit = True
        await serving


async def test_the_protocol_answers_the_plain_form_and_leaves_the_rest_to_asgi(
    in_process: InProcess,
) -> None:
    chunked = {**SHOP, "transfer-encoding": "chunked"}
    framed = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body()), body())
    forms = [
        (request("/orders", SHOP, body()), ["/orders"]),
        (request("/orders/", SHOP, body()), ["/orders/"]),
        (request("/orders?", SHOP, body()), []),
        (request("/orders", chunked, framed), []),
        (request("/orders", SHOP, b"{" + b" " * MAX_BODY_BYTES + b"}"), []),
    ]
    for raw, expected in forms:
        in_process.by_protocol.clear()
        answered = await exchange(in_process.port, raw)
        assert answered.status in (201, 413)
        assert in_process.by_protocol == expected, raw[:40]


async def test_a_fault_of_the_protocols_own_is_answered_500_and_the_connection_closed(
    in_process: InProcess, caplog: pytest.LogCaptureFixture
) -> None:
    in_process.failing[0] = True
    async with connection(in_process.port) as (reader, writer):
        writer.write(request("/orders", SHOP, body()))
        answer = await read_answer(reader)
        assert (answer.status, answer.body) == (500, b"Internal Server Error")
        assert answer.header("connection") == "close"
        assert await closed_by_server(reader)
    assert "failed to answer POST /orders" in caplog.text
