"""Loading the Lua scripts of `lua/` and sending them to Redis: the only Python that does.

A script names the pieces it shares with others (`lua/includes/`) with a line
`--- @include "includes/<name>"`; the loader puts the piece in its place before the SHA is taken,
so Redis only ever sees whole scripts.

`ScriptRunner` sends calls by EVALSHA, in one pipeline. It is where the engine learns the truth
after a fault: a connection cut or a timeout leaves the outcome unknown (Redis may have run the
script), so the runner sends the same calls again on a fresh connection, which is safe because
every script is idempotent by the IDs its caller put in it (order ID, operation ID). Only when no
answer comes within the command deadline does it give up with `OutcomeUnknown`. Client libraries
never resend by themselves (`stores.redis` turns their retries off): a blind resend of a script
that is not idempotent is how units get created or lost.

Replication is asynchronous: a master that dies right after a reply can take that write with it.
With `ReplicaAcks` every pipeline ends with WAIT on every node it wrote to, so its replies count
only once a replica holds the writes (see the README, "Redis Cluster").
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

from redis import exceptions as redis_errors
from redis.asyncio import RedisCluster

from engine.errors import OutcomeUnknown, StoreFull
from stores.redis import TRANSIENT_ERRORS, RedisClient, refused_by_a_moving_slot
from stores.redis_link import Call, RedisLink
from stores.settings import Settings

LUA_DIR: Final = Path(__file__).resolve().parent.parent / "lua"
INCLUDE: Final = re.compile(r'^--- @include "([a-z_/]+)"$', re.MULTILINE)

# How long a script remembers an operation's reply (lua/includes/operation.lua). Every resend
# comes within the runner's deadline, which must stay well below it; each remembered reply costs
# memory for this long.
OPERATION_TTL_S: Final = 120
RESEND_BACKOFF_MIN_S: Final = 0.02
RESEND_BACKOFF_MAX_S: Final = 0.5

Arg = str | int | float | bytes
R = TypeVar("R")
ResultHook = Callable[[int, Any], None]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LuaScript:
    name: str
    source: str
    sha: str

    @classmethod
    def load(cls, name: str) -> LuaScript:
        source = expand_includes((LUA_DIR / f"{name}.lua").read_text())
        return cls(name, source, hashlib.sha1(source.encode()).hexdigest())

    @property
    def read_only(self) -> bool:
        """Declared so to Redis (`#!lua flags=no-writes`): it writes nothing."""
        return self.source.startswith("#!lua flags=no-writes")


def expand_includes(source: str) -> str:
    def piece(match: re.Match[str]) -> str:
        return (LUA_DIR / f"{match.group(1)}.lua").read_text().rstrip("\n")

    return INCLUDE.sub(piece, source)


PLACE_ORDERS: Final = LuaScript.load("place_orders")
SET_STOCK: Final = LuaScript.load("set_stock")
HOLD: Final = LuaScript.load("hold")
CANCEL: Final = LuaScript.load("cancel")
TRANSITION: Final = LuaScript.load("transition")
RELEASE_HOLDS: Final = LuaScript.load("release_holds")
REROUTE: Final = LuaScript.load("reroute")
EXPIRE_PERSISTED: Final = LuaScript.load("expire_persisted")
PLACE_FROM_HOLD: Final = LuaScript.load("place_from_hold")
RELEASE_HOLD: Final = LuaScript.load("release_hold")
COMMIT_BASKET: Final = LuaScript.load("commit_basket")
RESOLVE_BASKET: Final = LuaScript.load("resolve_basket")
SETTLE_BASKET_HOLD: Final = LuaScript.load("settle_basket_hold")
BASKET_STEP: Final = LuaScript.load("basket_step")
CANCEL_BASKET: Final = LuaScript.load("cancel_basket")
RETURN_BASKET_UNITS: Final = LuaScript.load("return_basket_units")
REROUTE_SHIPMENT: Final = LuaScript.load("reroute_shipment")
READ_STOCK: Final = LuaScript.load("read_stock")
ALL_SCRIPTS: Final = (
    PLACE_ORDERS,
    PLACE_FROM_HOLD,
    RELEASE_HOLD,
    SET_STOCK,
    HOLD,
    CANCEL,
    TRANSITION,
    RELEASE_HOLDS,
    REROUTE,
    EXPIRE_PERSISTED,
    COMMIT_BASKET,
    RESOLVE_BASKET,
    SETTLE_BASKET_HOLD,
    BASKET_STEP,
    CANCEL_BASKET,
    RETURN_BASKET_UNITS,
    REROUTE_SHIPMENT,
    READ_STOCK,
)


async def load_all(redis: RedisClient) -> None:
    for script in ALL_SCRIPTS:
        if isinstance(redis, RedisCluster):
            # Replicas too: one promoted by a failover then already has them.
            await redis.execute_command(
                "SCRIPT LOAD", script.source, target_nodes=RedisCluster.ALL_NODES
            )
        else:
            await redis.script_load(script.source)


@dataclass(frozen=True, slots=True)
class Command(Generic[R]):
    """One script call: what `engine.commands` builds, and how its reply becomes a result (or
    raises the named domain error)."""

    script: LuaScript
    keys: Sequence[str]
    args: Sequence[Arg]
    decode: Callable[[Any], R]


class ScriptRefused(Exception):
    """A script rejected its arguments (`BADARG`) and wrote nothing: a caller's bug."""


@dataclass
class ReplicaAcks:
    """WAIT for `replicas` replicas to hold a pipeline's writes, at most `timeout_ms`.

    A reply that comes back short (the replica is down or lagging, or the shard runs without one
    after a failover) is still returned: the write is on the master, in its AOF. It is counted in
    `short`, which the metrics export, so running without the replica guarantee is visible."""

    replicas: int
    timeout_ms: int
    short: int = 0  # node pipelines whose writes fewer than `replicas` replicas acknowledged


class ScriptRunner:
    """Sends commands and learns their outcome, resending after transport faults until
    `deadline_s` has passed."""

    def __init__(
        self, redis: RedisClient, *, deadline_s: float, acks: ReplicaAcks | None = None
    ) -> None:
        if not 0 < deadline_s * 4 <= OPERATION_TTL_S:
            raise ValueError(
                f"a command deadline of {deadline_s} s must be positive and at most a quarter of "
                f"OPERATION_TTL_S ({OPERATION_TTL_S} s): a later resend could apply twice"
            )
        self.redis = redis
        self.deadline_s = deadline_s
        self.acks = acks
        self.resends = 0  # calls sent again after a fault: exported by the metrics
        # A single server is sent its calls on lean connections of the runner's own; a cluster
        # through redis-py's cluster pipeline, which follows the slots.
        self._link = None if isinstance(redis, RedisCluster) else RedisLink.beside(redis)

    async def aclose(self) -> None:
        """Closes the runner's own connections (the client it was given stays open)."""
        if self._link is not None:
            await self._link.aclose()

    async def run(self, command: Command[R]) -> R:
        (result,) = await self.run_all([command])
        if isinstance(result, BaseException):
            raise result
        done: R = result
        return done

    async def run_all(
        self,
        commands: Sequence[Command[Any]],
        on_result: ResultHook | None = None,
        on_resending: Callable[[], None] | None = None,
    ) -> list[Any]:
        """Every command's result, or the exception its reply decoded to, in order; one round
        trip per node when nothing goes wrong. A command whose reply could not be had within the
        deadline gets OutcomeUnknown. `on_result(i, result)` hears of each command as soon as
        its result is final: after a fault, those that were answered need not wait for the
        resends of those that were not. `on_resending()` is called once the first round trip
        is over if every call lost in it was refused by a moving slot and is sent again: its
        caller may then let go of what bounds its work in flight. Calls lost to a node that did
        not answer keep it, so that the load is still shed."""
        results: list[Any] = [None] * len(commands)

        def settle(i: int, reply: Any) -> None:
            results[i] = self._result(commands[i], reply)
            if on_result is not None:
                on_result(i, results[i])

        await self._replies(commands, settle, on_resending)
        return results

    @staticmethod
    def _result(command: Command[Any], reply: Any) -> Any:
        if isinstance(reply, BaseException):
            return _as_error(command, reply)
        try:
            return command.decode(reply)
        except Exception as exc:  # a domain error, or an unexpected reply
            return exc

    async def _replies(
        self,
        commands: Sequence[Command[Any]],
        settle: Callable[[int, Any], None],
        on_resending: Callable[[], None] | None,
    ) -> None:
        """Send every command in one pipeline; settle each reply that came back. A call whose
        reply was lost to a transport fault is then sent again on its own (so one failing node
        or slot holds up nothing else) until the deadline, then settled as OutcomeUnknown."""
        give_up_at = time.monotonic() + self.deadline_s
        got = await self._attempt(commands, give_up_at)
        lost = []
        for i, reply in enumerate(got):
            # The call may or may not have run: resend it (the scripts dedupe). MOVED/ASK are
            # followed by the cluster client itself, TRYAGAIN/CLUSTERDOWN mean "not run", and
            # ClusterError is the cluster client giving up after its redirections (a moving slot).
            if isinstance(reply, TRANSIENT_ERRORS):
                lost.append(i)
            else:
                settle(i, reply)
        if lost:
            fault = got[lost[0]]
            log.warning(
                "%d redis call(s) lost (%s: %s); resending", len(lost), type(fault).__name__, fault
            )
            if on_resending is not None and all(refused_by_a_moving_slot(got[i]) for i in lost):
                on_resending()
            await asyncio.gather(
                *(self._resend(i, commands[i], got[i], give_up_at, settle) for i in lost)
            )

    async def _resend(
        self,
        index: int,
        command: Command[Any],
        fault: BaseException,
        give_up_at: float,
        settle: Callable[[int, Any], None],
    ) -> None:
        backoff_s = RESEND_BACKOFF_MIN_S
        while time.monotonic() + backoff_s < give_up_at:
            await asyncio.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, RESEND_BACKOFF_MAX_S)
            self.resends += 1
            (reply,) = await self._attempt([command], give_up_at)
            if not isinstance(reply, TRANSIENT_ERRORS):
                settle(index, reply)
                return
            fault = reply
        settle(index, OutcomeUnknown(f"{type(fault).__name__}: {fault}"))

    async def _attempt(self, commands: Sequence[Command[Any]], give_up_at: float) -> list[Any]:
        """One send of the commands: their replies, or the transport fault in place of each."""
        left_s = max(give_up_at - time.monotonic(), RESEND_BACKOFF_MIN_S)
        try:
            async with asyncio.timeout(left_s):
                return await self._send_loading_scripts(commands)
        except TRANSIENT_ERRORS as exc:
            return [exc] * len(commands)

    async def _send_loading_scripts(self, commands: Sequence[Command[Any]]) -> list[Any]:
        replies = await self._send(commands)
        # A Redis that restarted or failed over has an empty script cache: load, send those again.
        missing = [i for i, r in enumerate(replies) if isinstance(r, redis_errors.NoScriptError)]
        if missing:
            try:
                await load_all(self.redis)
            except redis_errors.ResponseError as refused:  # e.g. OOM: Redis is at maxmemory
                for i in missing:
                    replies[i] = refused
                return replies
            resent = await self._send([commands[i] for i in missing])
            for i, reply in zip(missing, resent, strict=True):
                replies[i] = reply
        return replies

    async def _send(self, commands: Sequence[Command[Any]]) -> list[Any]:
        calls: list[Call] = [
            ("EVALSHA", command.script.sha, len(command.keys), *command.keys, *command.args)
            for command in commands
        ]
        acks = self.acks
        # Reads have no writes for replicas to acknowledge.
        if acks is not None and all(command.script.read_only for command in commands):
            acks = None
        if self._link is None:
            return await self._send_to_cluster(commands, calls, acks)
        if acks is not None:
            calls.append(("WAIT", acks.replicas, acks.timeout_ms))
        replies = await self._link.call_all(calls)
        if acks is not None:
            _count_short(acks, replies[len(commands) :])
        return replies[: len(commands)]

    async def _send_to_cluster(
        self, commands: Sequence[Command[Any]], calls: Sequence[Call], acks: ReplicaAcks | None
    ) -> list[Any]:
        cluster = self.redis
        assert isinstance(cluster, RedisCluster)
        pipe = cluster.pipeline(transaction=False)
        for call in calls:
            # execute_command, not pipe.evalsha: redis-py refuses EVALSHA in cluster pipelines,
            # yet routes it by its first key, which is all one-slot scripts need.
            pipe.execute_command(*call)
        if acks is None:
            return list(await pipe.execute(raise_on_error=False))
        # A cluster pipeline keeps each node's commands in order on one connection, so a WAIT
        # aimed at a node comes after that node's EVALSHAs (WAIT covers the writes of its own
        # connection only).
        owners = (cluster.get_node_from_key(command.keys[0]) for command in commands)
        nodes = {node.name: node for node in owners if node is not None}
        for node in nodes.values():
            pipe.execute_command("WAIT", acks.replicas, acks.timeout_ms, target_nodes=node)
        replies = list(await pipe.execute(raise_on_error=False))
        _count_short(acks, replies[len(commands) :])
        return replies[: len(commands)]


def script_runner(redis: RedisClient, settings: Settings) -> ScriptRunner:
    """The runner a process uses: the settings' deadline, and WAIT when replicas are asked for."""
    acks = None
    if settings.redis_wait_replicas > 0:
        acks = ReplicaAcks(settings.redis_wait_replicas, settings.redis_wait_timeout_ms)
    return ScriptRunner(redis, deadline_s=settings.command_deadline_s, acks=acks)


def _as_error(command: Command[Any], reply: BaseException) -> BaseException:
    message = str(reply)
    if isinstance(reply, redis_errors.OutOfMemoryError) or message.startswith("OOM"):
        # maxmemory with noeviction: a script that may write is refused before it runs.
        return StoreFull()
    if message.startswith("BADARG"):
        return ScriptRefused(f"{command.script.name}.lua refused its arguments: {message}")
    return reply


def _count_short(acks: ReplicaAcks, wait_replies: Sequence[Any]) -> None:
    short = sum(1 for n in wait_replies if isinstance(n, BaseException) or int(n) < acks.replicas)
    if short:
        acks.short += short
        log.warning(
            "writes on %d of %d nodes not acknowledged by %d replica(s) within %d ms",
            short,
            len(wait_replies),
            acks.replicas,
            acks.timeout_ms,
        )
