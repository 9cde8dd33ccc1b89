"""Script calls to a single Redis server on lean connections of their own.

redis-py's asyncio client costs some 50 us of CPU per round trip however few commands it carries
(its pipeline object, pool lock, per-read timeouts and observability hooks), which is most of an
order's cost once the worker is not busy enough to batch (README, "One round trip's own cost").
A `RedisLink` sends a list of commands as one write on a connection it holds alone until their
replies are back, and reads them with hiredis straight from the event loop's callbacks.

It keeps what the fault handling relies on from redis-py's connections: every fault is one of
`stores.redis.TRANSIENT_ERRORS` (a reply not back within the socket timeout, a refused connect, a
connection cut), Redis's error replies come back as redis-py's exception classes in place of
their replies, and it never sends anything again by itself. A connection whose call did not end
with all its replies (a fault, a timeout, a cancelled caller) is closed, never reused, so a late
reply cannot be taken for another call's. A Redis Cluster is served by redis-py's cluster
pipeline instead (`engine.scripts.ScriptRunner`), which follows its slots.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Final, cast

import hiredis
from redis import exceptions as redis_errors
from redis._parsers.base import BaseParser
from redis.asyncio import Redis

Call = tuple[str | int | float | bytes, ...]
# A bound, like redis-py's pool's, on connections in use at once; past it a caller waits.
MAX_CONNECTIONS: Final = 256
DEFAULT_CONNECT_TIMEOUT_S: Final = 5.0


class _LinkConnection(asyncio.Protocol):
    """One TCP connection carrying one call (a list of commands) at a time."""

    def __init__(self) -> None:
        # Error replies become the exceptions redis-py would raise for them (NoScriptError,
        # OutOfMemoryError, BusyLoadingError, ...), so callers handle one set of classes.
        self._reader = hiredis.Reader(encoding="utf-8", replyError=BaseParser.parse_error)
        self._transport: asyncio.Transport | None = None
        self._replies: list[Any] = []
        self._expected = 0  # replies the call in progress waits for; 0 between calls
        self._done: asyncio.Future[list[Any]] | None = None
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio's classes; they have their methods.
        self._transport = cast(asyncio.Transport, transport)
        self.open = True

    def send(self, packed: bytes, count: int) -> asyncio.Future[list[Any]]:
        """Writes `count` packed commands; the future gets their replies in order."""
        assert self._transport is not None and self._done is None
        done: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._done, self._expected, self._replies = done, count, []
        self._transport.write(packed)
        return done

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        try:
            reply = reader.gets()
            while reply is not False:
                self._replies.append(reply)
                reply = reader.gets()
        except hiredis.ProtocolError as exc:
            self._fail(redis_errors.ConnectionError(f"unreadable reply from Redis: {exc}"))
            return
        if len(self._replies) > self._expected:  # replies no command asked for
            self._fail(redis_errors.ConnectionError("a reply from Redis that no command asked for"))
        elif self._done is not None and len(self._replies) == self._expected:
            done, replies = self._done, self._replies
            self._done, self._expected, self._replies = None, 0, []
            if not done.done():
                done.set_result(replies)

    def eof_received(self) -> bool:
        return False  # close: Redis closed its side

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self._done is not None and not self._done.done():
            reason = f": {exc}" if exc else ""
            self._done.set_exception(
                redis_errors.ConnectionError(f"Connection closed by server{reason}")
            )
        self._done = None

    def time_out(self, timeout_s: float) -> None:
        self._fail(redis_errors.TimeoutError(f"Timeout reading from Redis after {timeout_s} s"))

    def _fail(self, error: Exception) -> None:
        self.open = False
        if self._done is not None and not self._done.done():
            self._done.set_exception(error)
        self._done, self._expected = None, 0
        self.close()

    def close(self) -> None:
        self.open = False
        if self._transport is not None:
            self._transport.close()


class RedisLink:
    """Calls to one Redis server: each call's commands in one write, on a connection held by
    that call alone. Connections open when needed and stay open while they are sound."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout_s: float | None,
        connect_timeout_s: float,
        username: str | None = None,
        password: str | None = None,
        db: int = 0,
    ) -> None:
        self._address = (host, port)
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._hello = _hello_calls(username, password, db)
        self._idle: list[_LinkConnection] = []
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)

    @classmethod
    def beside(cls, client: Redis) -> RedisLink:
        """A link to the server `client` talks to, with its credentials, database and timeouts."""
        kwargs = client.connection_pool.connection_kwargs
        timeout_s = kwargs.get("socket_timeout")
        return cls(
            kwargs.get("host", "localhost"),
            int(kwargs.get("port", 6379)),
            timeout_s=timeout_s,
            connect_timeout_s=kwargs.get("socket_connect_timeout")
            or timeout_s
            or DEFAULT_CONNECT_TIMEOUT_S,
            username=kwargs.get("username"),
            password=kwargs.get("password"),
            db=int(kwargs.get("db") or 0),
        )

    async def call_all(self, calls: Sequence[Call]) -> list[Any]:
        """Each command's reply, or the exception its error reply stands for, in order. Raises
        one of TRANSIENT_ERRORS when the replies could not all be had: the commands may or may
        not have run."""
        packed = _packed(calls)
        async with self._slots:
            connection = self._idle.pop() if self._idle else None
            while connection is not None and not connection.open:
                connection = self._idle.pop() if self._idle else None
            if connection is None:
                connection = await self._connect()
            replies = await self._exchange(connection, packed, len(calls))
            self._idle.append(connection)
            return replies

    async def _exchange(self, connection: _LinkConnection, packed: bytes, count: int) -> list[Any]:
        replies = connection.send(packed, count)
        timer = None
        if self._timeout_s:
            timer = asyncio.get_running_loop().call_later(
                self._timeout_s, connection.time_out, self._timeout_s
            )
        try:
            return await replies
        except BaseException:
            # A fault, a timeout or a cancelled caller: the replies may still come, to no one.
            connection.close()
            raise
        finally:
            if timer is not None:
                timer.cancel()

    async def _connect(self) -> _LinkConnection:
        host, port = self._address
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                _, connection = await loop.create_connection(_LinkConnection, host, port)
                if self._hello:
                    await self._greet(connection)
        except TimeoutError:
            raise redis_errors.TimeoutError(
                f"Timeout connecting to Redis at {host}:{port}"
            ) from None
        except OSError as exc:
            raise redis_errors.ConnectionError(
                f"Error connecting to Redis at {host}:{port}: {exc}"
            ) from exc
        return connection

    async def _greet(self, connection: _LinkConnection) -> None:
        """AUTH and SELECT, as redis-py sends them on a new connection."""
        packed = _packed(self._hello)
        try:
            replies = await connection.send(packed, len(self._hello))
        except BaseException:
            connection.close()
            raise
        refused = next((r for r in replies if isinstance(r, Exception)), None)
        if refused is not None:
            connection.close()
            if isinstance(refused, redis_errors.AuthenticationError):
                raise refused
            raise redis_errors.ConnectionError(f"Redis refused the connection: {refused}")

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


def _packed(calls: Sequence[Call]) -> bytes:
    # hiredis's stub types its argument as a one-item tuple; it takes any number of items.
    return b"".join(hiredis.pack_command(call) for call in calls)  # type: ignore[arg-type]


def _hello_calls(username: str | None, password: str | None, db: int) -> tuple[Call, ...]:
    calls: list[Call] = []
    if password:
        calls.append(("AUTH", username, password) if username else ("AUTH", password))
    if db:
        calls.append(("SELECT", db))
    return tuple(calls)
