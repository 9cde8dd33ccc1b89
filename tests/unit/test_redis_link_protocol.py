"""The link's connection protocol (stores/redis_link.py, LinkConnection) fed by hand: replies cut
anywhere between reads, a reply that does not decode, replies no command asked for, and the
timeout that bounds a call's silence rather than its length. tests/test_redis_link.py runs the
link on a real Redis."""

from __future__ import annotations

import asyncio

import pytest
from redis import exceptions as redis_errors

from stores.redis import TRANSIENT_ERRORS
from stores.redis_link import LinkConnection


class FakeTransport:
    def __init__(self) -> None:
        self.written = b""
        self.aborted = False
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closing or self.aborted

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.closing = True


def connected() -> tuple[LinkConnection, FakeTransport]:
    connection, transport = LinkConnection("utf-8", "strict"), FakeTransport()
    connection.connection_made(transport)  # type: ignore[arg-type]
    return connection, transport


async def test_replies_cut_anywhere_between_reads_end_the_call_once_all_are_in() -> None:
    connection, transport = connected()
    replies = connection.send(b"<3 commands>", 3, None)
    assert transport.written == b"<3 commands>"
    wire = b"+OK\r\n*2\r\n:1\r\n$3\r\ntwo\r\n-NOSCRIPT No matching script\r\n"
    for cut in (3, 11, 20, len(wire)):
        connection.data_received(wire[:cut])
        wire = wire[cut:]
        assert replies.done() == (not wire)
        if not wire:
            break
    ok, array, error = replies.result()
    assert (ok, array) == ("OK", [1, "two"])
    assert isinstance(error, redis_errors.NoScriptError)
    assert connection.usable and not transport.aborted


async def test_a_reply_that_does_not_decode_stands_alone_and_the_connection_stays_in_step() -> None:
    connection, _ = connected()
    replies = connection.send(b"x", 3, None)
    connection.data_received(b"+OK\r\n$2\r\n\xff\xfe\r\n:7\r\n")
    ok, undecodable, seven = replies.result()
    assert (ok, seven) == ("OK", 7)
    assert isinstance(undecodable, redis_errors.InvalidResponse)
    assert not isinstance(undecodable, TRANSIENT_ERRORS)  # not resent as if the link failed
    assert connection.usable
    assert (await _next_call(connection, b":8\r\n")) == [8]


async def test_a_reply_no_command_asked_for_fails_the_call_and_drops_the_connection() -> None:
    connection, transport = connected()
    replies = connection.send(b"x", 1, None)
    connection.data_received(b"+OK\r\n+SURPLUS\r\n")
    with pytest.raises(redis_errors.ConnectionError) as surplus:
        replies.result()
    assert isinstance(surplus.value, TRANSIENT_ERRORS)
    assert transport.aborted and not connection.usable


async def test_a_reply_between_calls_drops_the_connection() -> None:
    connection, transport = connected()
    assert (await _next_call(connection, b"+OK\r\n")) == ["OK"]
    connection.data_received(b"+LATE\r\n")
    assert transport.aborted and not connection.usable


async def test_the_timeout_bounds_silence_not_the_length_of_a_call() -> None:
    connection, transport = connected()
    replies = connection.send(b"x", 6, 0.1)
    for _ in range(5):  # 0.3 s in all, never 0.1 s without a byte
        await asyncio.sleep(0.06)
        connection.data_received(b":1\r\n")
    assert not replies.done()
    with pytest.raises(redis_errors.TimeoutError) as silent:
        await asyncio.wait_for(replies, 1.0)
    assert isinstance(silent.value, TRANSIENT_ERRORS)
    assert transport.aborted and not connection.usable


async def test_a_closed_connection_fails_its_call_as_a_transport_fault() -> None:
    connection, _ = connected()
    replies = connection.send(b"x", 2, None)
    connection.data_received(b"+OK\r\n")
    connection.connection_lost(ConnectionResetError("reset by peer"))
    with pytest.raises(redis_errors.ConnectionError) as lost:
        replies.result()
    assert isinstance(lost.value, TRANSIENT_ERRORS)
    assert not connection.usable


async def _next_call(connection: LinkConnection, reply: bytes) -> list[object]:
    replies = connection.send(b"x", 1, None)
    connection.data_received(reply)
    return await replies
