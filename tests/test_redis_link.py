"""The script runner's own connections to a single Redis (stores/redis_link.py), on a real Redis:
replies in order with error replies as redis-py's exceptions, the client's database and
credentials, and every fault (a paused Redis, a cut connection, a cancelled caller, nobody
listening) as one of TRANSIENT_ERRORS with no reply ever handed to the wrong call.

They run on the plain Redis of either tier (on the cluster tier, the one holding rq's queue): a
cluster is served by redis-py's cluster pipeline instead. The runner's use of the link under
faults, with the ledger, is tests/test_exactly_once.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from engine import keys, scripts
from engine.inventory import Inventory
from engine.keys import partition_of_product
from engine.scripts import ReplicaAcks, ScriptRunner
from stores.redis import TRANSIENT_ERRORS
from stores.redis_link import RedisLink
from stores.settings import Settings
from tests.notice_servers import free_port
from tests.tcp_proxy import TcpProxy
from tests.test_exactly_once import redis_paused, redis_pid_holding

TIMEOUT_S = 0.3


@pytest.fixture
async def plain(settings: Settings) -> AsyncIterator[Redis]:
    """redis-py's client to the plain Redis of this tier, in the tests' database."""
    client = Redis.from_url(settings.queue_url, decode_responses=True, socket_timeout=TIMEOUT_S)
    yield client
    await client.aclose()


@contextlib.asynccontextmanager
async def link_beside(client: Redis) -> AsyncIterator[RedisLink]:
    link = RedisLink.beside(client)
    try:
        yield link
    finally:
        await link.aclose()


async def connected_clients(client: Redis) -> int:
    return int((await client.info("clients"))["connected_clients"])


async def test_replies_come_in_order_and_error_replies_as_redis_py_raises_them(
    plain: Redis,
) -> None:
    key = f"link-test:{uuid.uuid4()}"
    async with link_beside(plain) as link:
        replies = await link.call_all(
            [
                ("SET", key, "v"),
                ("GET", key),
                ("EVALSHA", "0" * 40, 0),
                ("INCR", key),
                ("EVAL", "return {1, 'two', false}", 0),
            ]
        )
    await plain.delete(key)
    assert replies[:2] == ["OK", "v"]
    assert isinstance(replies[2], redis_errors.NoScriptError)
    assert type(replies[3]) is redis_errors.ResponseError
    assert replies[4] == [1, "two", None]


async def test_the_link_uses_the_clients_database_and_credentials(plain: Redis) -> None:
    user, password, key = f"link-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex, "link-test:db"
    await plain.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~*", "+@all")
    kwargs = plain.connection_pool.connection_kwargs
    host, port = kwargs["host"], kwargs["port"]
    try:
        as_user = Redis(
            host=host, port=port, db=9, username=user, password=password, decode_responses=True
        )
        async with link_beside(as_user) as link:
            assert await link.call_all([("SET", key, "in-9"), ("ACL", "WHOAMI")]) == ["OK", user]
        assert await as_user.get(key) == "in-9"
        await as_user.delete(key)
        await as_user.aclose()
        wrong = Redis(host=host, port=port, username=user, password="wrong")
        async with link_beside(wrong) as link:
            with pytest.raises(redis_errors.AuthenticationError):
                await link.call_all([("PING",)])
        await wrong.aclose()
    finally:
        await plain.execute_command("ACL", "DELUSER", user)


async def test_a_paused_redis_times_out_and_its_late_reply_reaches_no_later_call(
    plain: Redis,
) -> None:
    async with link_beside(plain) as link:
        assert await link.call_all([("ECHO", "warm")]) == ["warm"]
        with (
            redis_paused(await redis_pid_holding(plain, "any key")),
            pytest.raises(redis_errors.TimeoutError) as timed_out,
        ):
            await link.call_all([("ECHO", "late")])
        assert isinstance(timed_out.value, TRANSIENT_ERRORS)
        # Redis answers "late" now that it runs again, on the connection the timeout closed.
        assert await link.call_all([("ECHO", "next")]) == ["next"]


async def test_a_cancelled_call_closes_its_connection_and_leaves_its_reply_to_no_one(
    plain: Redis,
) -> None:
    async with link_beside(plain) as link:
        assert await link.call_all([("ECHO", "warm")]) == ["warm"]  # connected and greeted
        clients = await connected_clients(plain)
        with redis_paused(await redis_pid_holding(plain, "any key")):
            call = asyncio.ensure_future(link.call_all([("ECHO", "abandoned")]))
            await asyncio.sleep(TIMEOUT_S / 3)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
        await asyncio.sleep(0.1)  # Redis, running again, sees the connection gone
        assert await connected_clients(plain) == clients - 1
        assert await link.call_all([("ECHO", "mine")]) == ["mine"]


async def test_closing_the_link_closes_its_connections_and_refuses_later_calls(
    plain: Redis,
) -> None:
    link = RedisLink.beside(plain)
    clients = await connected_clients(plain)
    await asyncio.gather(*(link.call_all([("ECHO", str(n))]) for n in range(3)))
    assert await connected_clients(plain) == clients + 3
    await link.aclose()
    await asyncio.sleep(0.1)
    assert await connected_clients(plain) == clients
    with pytest.raises(redis_errors.ConnectionError):
        await link.call_all([("PING",)])


async def test_wait_for_replicas_follows_the_calls_on_a_single_redis(plain: Redis) -> None:
    """The runner's WAIT goes on the connection that carried the writes; with no replica to
    acknowledge them, the call is counted short and its replies still come back."""
    acks = ReplicaAcks(replicas=1, timeout_ms=10)
    runner = ScriptRunner(plain, deadline_s=1.0, acks=acks)
    await scripts.load_all(plain)
    try:
        await Inventory(runner).set_many([("link-test-sku", "w-link", 5)], "link test")
    finally:
        await runner.aclose()
    assert acks.short == 1
    assert (
        await plain.hget(
            keys.stock(partition_of_product("link-test-sku"), "link-test-sku"), "w-link"
        )
        == "5"
    )


async def test_a_connection_cut_during_a_call_is_transient_and_the_next_call_reconnects(
    plain: Redis,
) -> None:
    kwargs = plain.connection_pool.connection_kwargs
    async with TcpProxy((kwargs["host"], kwargs["port"])) as proxy:
        proxied = Redis(
            host="127.0.0.1",
            port=proxy.port,
            db=kwargs.get("db", 0),
            socket_timeout=TIMEOUT_S,
            decode_responses=True,
        )
        async with link_beside(proxied) as link:
            assert await link.call_all([("ECHO", "before")]) == ["before"]
            proxy.cut_next(b"cut-me")
            with pytest.raises(redis_errors.ConnectionError) as cut:
                await link.call_all([("ECHO", "cut-me")])
            assert isinstance(cut.value, TRANSIENT_ERRORS)
            assert await link.call_all([("ECHO", "after")]) == ["after"]
            # An idle connection closed from the other side is dropped, not handed to a call.
            proxy.close_all()
            await asyncio.sleep(0.1)
            assert await link.call_all([("ECHO", "again")]) == ["again"]
        await proxied.aclose()
        assert proxy.cuts == 1


async def test_nobody_listening_is_a_transient_connection_error() -> None:
    link = RedisLink("127.0.0.1", free_port(), timeout_s=TIMEOUT_S, connect_timeout_s=TIMEOUT_S)
    with pytest.raises(redis_errors.ConnectionError) as refused:
        await link.call_all([("PING",)])
    assert isinstance(refused.value, TRANSIENT_ERRORS)
