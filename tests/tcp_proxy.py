"""A TCP proxy on loopback that cuts connections on purpose, for fault-injection tests.

It forwards bytes both ways between clients and one upstream server. Told to cut, it waits for a
client chunk that contains a marker (e.g. b"EVALSHA"), forwards it (and whatever else the client
sends, such as the rest of a pipeline), swallows what the server answers and, once the server has
answered and gone quiet, drops both sockets: the server ran the command, the client never learns
the outcome. That is the fault an exactly-once design must survive (a reply lost on the way back),
as opposed to a request that never arrived, which any retry handles.

It runs in the caller's event loop: `async with TcpProxy(("127.0.0.1", 6379)) as proxy:`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final

from stores.tasks import cancel_and_wait

LISTEN_HOST: Final = "127.0.0.1"
CHUNK_BYTES: Final = 64 * 1024
# After forwarding the chunk to cut, wait for the server's first reply byte (proof it executed
# what it received) at most this long; a server that never answers (paused) is cut without it.
REPLY_WAIT_S: Final = 1.0
# Then keep swallowing until the server has been quiet this long, so every command of a pipeline
# larger than the server's read buffer has run before the sockets drop.
QUIET_S: Final = 0.02
SETTLE_MAX_S: Final = 1.0


@dataclass
class CutRule:
    """Which chunks containing `marker` to cut: every `every`-th one, or each with
    `probability` drawn from `rng`; at most `limit` cuts (None: no limit)."""

    marker: bytes
    every: int = 1
    probability: float = 1.0
    rng: random.Random | None = None
    limit: int | None = 1
    matched: int = 0
    cut: int = 0

    def wants_cut(self, window: bytes) -> bool:
        if self.marker not in window:
            return False
        self.matched += 1
        if self.limit is not None and self.cut >= self.limit:
            return False
        if self.matched % self.every != 0:
            return False
        if self.rng is not None and self.rng.random() >= self.probability:
            return False
        self.cut += 1
        return True


@dataclass(eq=False)
class _Link:
    """One client connection and its upstream connection."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    cutting: bool = False  # from now on nothing the server sends reaches the client
    reply_seen: asyncio.Event = field(default_factory=asyncio.Event)
    last_reply_at: float = 0.0
    tail: bytes = b""  # end of the previous client chunk: a marker split across two reads

    def abort(self) -> None:
        # abort(), not close(): whatever is still buffered for either side is dropped.
        self.client.transport.abort()
        self.upstream.transport.abort()


class TcpProxy:
    def __init__(self, upstream: tuple[str, int], *, port: int = 0) -> None:
        self.upstream = upstream
        self._requested_port = port
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._rule: CutRule | None = None
        self.cuts = 0  # connections cut by a rule
        self.cuts_after_reply = 0  # of which the server had answered (so had run the command)
        self.connections = 0  # client connections accepted, ever

    @property
    def port(self) -> int:
        assert self._server is not None, "the proxy is not started"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def address(self) -> str:
        return f"{LISTEN_HOST}:{self.port}"

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._serve, LISTEN_HOST, self._requested_port)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        self.close_all()
        # A link task waits with wait_for, which can lose a cancellation (stores/tasks.py).
        await asyncio.gather(*map(cancel_and_wait, list(self._tasks)), return_exceptions=True)
        await self._server.wait_closed()

    # --- what to cut -------------------------------------------------------------------------

    def cut_next(self, marker: bytes) -> None:
        """Cut the connection that next carries `marker`, once."""
        self._rule = CutRule(marker)

    def cut_every(self, marker: bytes, every: int, *, limit: int | None) -> None:
        """Cut on every `every`-th chunk carrying `marker`, at most `limit` times."""
        self._rule = CutRule(marker, every=every, limit=limit)

    def cut_randomly(
        self, marker: bytes, probability: float, *, seed: int, limit: int | None
    ) -> None:
        """Cut each chunk carrying `marker` with `probability`, from a seeded RNG."""
        self._rule = CutRule(marker, probability=probability, rng=random.Random(seed), limit=limit)

    def stop_cutting(self) -> None:
        self._rule = None

    def close_all(self) -> None:
        """Drop every open connection at once (both sides)."""
        for link in list(self._links):
            link.abort()

    # --- forwarding --------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                writer.transport.abort()
                return
            link = _Link(writer, up_writer)
            self._links.add(link)
            try:
                # Either direction ending ends both: the protocols proxied here never half-close.
                await asyncio.gather(
                    self._client_to_upstream(link, reader),
                    self._upstream_to_client(link, up_reader),
                )
            finally:
                link.abort()
                self._links.discard(link)
        finally:
            self._tasks.discard(task)

    async def _client_to_upstream(self, link: _Link, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await reader.read(CHUNK_BYTES):
                if not link.cutting and self._wants_cut(link, chunk):
                    # Set before the chunk leaves: its reply cannot arrive before this point.
                    link.cutting = True
                    self._spawn(self._cut(link))
                # Still forwarded after the decision: the rest of a command (or of a pipeline)
                # split over several reads reaches the server before the cut.
                link.upstream.write(chunk)
                await link.upstream.drain()
        link.abort()

    def _wants_cut(self, link: _Link, chunk: bytes) -> bool:
        rule = self._rule
        if rule is None:
            return False
        window, keep = link.tail + chunk, len(rule.marker) - 1
        link.tail = chunk[-keep:] if keep else b""
        return rule.wants_cut(window)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _upstream_to_client(self, link: _Link, reader: asyncio.StreamReader) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(CHUNK_BYTES):
                if link.cutting:  # swallowed: the client must not learn the outcome
                    link.last_reply_at = loop.time()
                    link.reply_seen.set()
                    continue
                link.client.write(data)
                await link.client.drain()
        link.abort()

    async def _cut(self, link: _Link) -> None:
        loop = asyncio.get_running_loop()
        replied = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(link.reply_seen.wait(), REPLY_WAIT_S)
            replied = True
        settle_until = loop.time() + SETTLE_MAX_S
        while replied and loop.time() < settle_until:
            quiet_for = loop.time() - link.last_reply_at
            if quiet_for >= QUIET_S:
                break
            await asyncio.sleep(QUIET_S - quiet_for)
        self.cuts += 1
        self.cuts_after_reply += int(replied)
        link.abort()
