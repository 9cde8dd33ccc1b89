"""Script calls to a single Redis server on lean connections of their own.

redis-py's asyncio client costs some 50 us of CPU per round trip however few commands it carries
(its pipeline object, pool lock, per-read timeouts and observability hooks): a large share of an
order's cost wherever a round trip carries few orders (README, "One round trip's own cost").
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
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection

from stores.redis import MAX_CONNECTIONS

Call = tuple[str | int | float | bytes, ...]
DEFAULT_CONNECT_TIMEOUT_S: Final = 5.0
_INCOMPLETE: Final = object()  # what hiredis's reader returns while a reply is still partial


class LinkConnection(asyncio.Protocol):
    """One TCP connection carrying one call (a list of commands) at a time."""

    def __init__(self, encoding: str | None, errors: str) -> None:
        # Error replies become the exceptions redis-py would raise for them (NoScriptError,
        # OutOfMemoryError, BusyLoadingError, ...), so callers handle one set of classes.
        self._reader = hiredis.Reader(
            encoding=encoding,
            errors=errors,
            replyError=BaseParser.parse_error,
            notEnoughData=_INCOMPLETE,
        )
        self._transport: asyncio.Transport | None = None
        self._replies: list[Any] = []
        self._expected = 0  # replies the call in progress waits for; 0 between calls
        self._done: asyncio.Future[list[Any]] | None = None
        self._last_read_at = 0.0  # loop time of the last bytes read, or of the call's send
        self._timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()  # made by the loop's create_connection
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio's classes; they have their methods.
        self._transport = cast(asyncio.Transport, transport)
        self.open = True

    @property
    def usable(self) -> bool:
        return self.open and self._transport is not None and not self._transport.is_closing()

    def send(self, packed: bytes, count: int, timeout_s: float | None) -> asyncio.Future[list[Any]]:
        """Writes `count` packed commands; the future gets their replies in order, or a
        TimeoutError once no byte of them came for `timeout_s` (None: no bound). So a long call
        that Redis answers as it goes is not cut, as redis-py's socket timeout bounds each read."""
        assert self._transport is not None and self._done is None
        done: asyncio.Future[list[Any]] = self._loop.create_future()
        self._done, self._expected, self._replies = done, count, []
        self._last_read_at = self._loop.time()
        if timeout_s:
            self._timer = self._loop.call_later(timeout_s, self._check_quiet, timeout_s)
        self._transport.write(packed)
        return done

    def _check_quiet(self, timeout_s: float) -> None:
        self._timer = None
        if self._done is None:
            return
        quiet_until = self._last_read_at + timeout_s
        if self._loop.time() < quiet_until:
            self._timer = self._loop.call_at(quiet_until, self._check_quiet, timeout_s)
        else:
            self._fail(redis_errors.TimeoutError(f"Timeout reading from Redis after {timeout_s} s"))

    def data_received(self, data: bytes) -> None:
        self._last_read_at = self._loop.time()
        reader, replies = self._reader, self._replies
        reader.feed(data)
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as exc:
                self._fail(redis_errors.ConnectionError(f"unreadable reply from Redis: {exc}"))
                return
            except UnicodeDecodeError as exc:
                # The reader has taken the whole reply and stays in step: this reply alone is
                # bad, as redis-py would report it, and not a transport fault to resend after.
                reply = redis_errors.InvalidResponse(f"a reply that is not {exc.encoding}: {exc}")
            if reply is _INCOMPLETE:
                break
            replies.append(reply)
        if len(replies) > self._expected:  # replies no command asked for
            self._fail(redis_errors.ConnectionError("a reply from Redis that no command asked for"))
        elif self._done is not None and len(replies) == self._expected:
            done = self._settle()
            if not done.done():
                done.set_result(replies)

    def eof_received(self) -> bool:
        self.open = False
        return False  # close: Redis closed its side

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f": {exc}" if exc else ""
        self._end(redis_errors.ConnectionError(f"Connection closed by server{reason}"))

    def _fail(self, error: Exception) -> None:
        """Ends the call with `error` and drops the connection at once, unsent bytes included:
        what the call had not yet written must not reach Redis after the caller gave up."""
        self._end(error)
        if self._transport is not None:
            self._transport.abort()

    def _end(self, error: Exception) -> None:
        self.open = False
        if self._done is not None:
            done = self._settle()
            if not done.done():
                done.set_exception(error)

    def _settle(self) -> asyncio.Future[list[Any]]:
        """The call in progress, taken off the connection: its state reset, its timer stopped."""
        done = self._done
        assert done is not None
        self._done, self._expected, self._replies = None, 0, []
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return done

    def close(self) -> None:
        """Closes a connection between calls, or ends the call in progress as a fault."""
        if self._done is None:
            self.open = False
            if self._transport is not None:
                self._transport.close()
        else:
            self._fail(redis_errors.ConnectionError("the call was abandoned"))


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
        encoding: str | None = "utf-8",
        encoding_errors: str = "strict",
    ) -> None:
        """`timeout_s`: how long a call may go without a byte of its replies, as redis-py's
        socket timeout bounds each read (None or 0: no bound)."""
        self._address = (host, port)
        self._timeout_s = timeout_s or None
        self._connect_timeout_s = connect_timeout_s
        self._encoding = (encoding, encoding_errors)
        self._hello = _hello_calls(username, password, db)
        self._idle: list[LinkConnection] = []
        self._live: set[LinkConnection] = set()  # every connection opened and not yet closed
        # redis-py's pool bound, for this link's connections of its own.
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self._closed = False

    @classmethod
    def beside(cls, client: Redis) -> RedisLink:
        """A link to the server `client` talks to, with its credentials, database, timeouts and
        decoding. Only plain TCP with a password, as `stores.redis.connect_redis` connects."""
        pool = client.connection_pool
        kwargs = pool.connection_kwargs
        if (
            issubclass(pool.connection_class, (SSLConnection, UnixDomainSocketConnection))
            or "path" in kwargs
            or kwargs.get("credential_provider") is not None
        ):
            raise ValueError(
                "the script runner's connections speak plain TCP with a password: no TLS, unix "
                "socket or credential provider"
            )
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
            encoding=kwargs.get("encoding", "utf-8") if kwargs.get("decode_responses") else None,
            encoding_errors=kwargs.get("encoding_errors", "strict"),
        )

    async def call_all(self, calls: Sequence[Call]) -> list[Any]:
        """Each command's reply, or the exception its error reply stands for, in order. Raises
        one of TRANSIENT_ERRORS when the replies could not all be had: the commands may or may
        not have run."""
        packed = _packed(calls)
        async with self._slots:
            connection = None
            while self._idle and connection is None:
                candidate = self._idle.pop()
                if candidate.usable:
                    connection = candidate
                else:  # Redis closed it while it was idle
                    self._drop(candidate)
            if connection is None:
                connection = await self._connect()
            try:
                replies = await connection.send(packed, len(calls), self._timeout_s)
            except BaseException:
                # A fault, a timeout or a caller gone: its replies may still come, to no one.
                self._drop(connection)
                raise
            if self._closed:
                self._drop(connection)
            else:
                self._idle.append(connection)
            return replies

    def _drop(self, connection: LinkConnection) -> None:
        connection.close()
        self._live.discard(connection)

    async def _connect(self) -> LinkConnection:
        if self._closed:
            raise redis_errors.ConnectionError("the link is closed")
        host, port = self._address
        loop = asyncio.get_running_loop()
        encoding, errors = self._encoding
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                _, connection = await loop.create_connection(
                    lambda: LinkConnection(encoding, errors), host, port
                )
                self._live.add(connection)
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

    async def _greet(self, connection: LinkConnection) -> None:
        """AUTH and SELECT, as redis-py sends them on a new connection."""
        try:
            replies = await connection.send(
                _packed(self._hello), len(self._hello), self._connect_timeout_s
            )
        except BaseException:
            self._drop(connection)
            raise
        refused = next((r for r in replies if isinstance(r, Exception)), None)
        if refused is not None:
            self._drop(connection)
            if isinstance(refused, redis_errors.AuthenticationError):
                raise refused
            raise redis_errors.ConnectionError(f"Redis refused the connection: {refused}")

    async def aclose(self) -> None:
        """Closes every connection, a call's in progress too (it fails as a transport fault);
        later calls are refused."""
        self._closed = True
        live, self._live, self._idle = self._live, set(), []
        for connection in live:
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
