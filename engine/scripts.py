"""Loading the Lua scripts of `lua/` into Redis and calling them; the only Python that does.

Calls go by EVALSHA. A Redis that restarted or failed over has an empty script cache and answers
NOSCRIPT; the script is then loaded (on every master, for a cluster) and the call sent once more.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from redis.exceptions import NoScriptError

from stores.redis import RedisClient

LUA_DIR: Final = Path(__file__).resolve().parent.parent / "lua"

Arg = str | int | float | bytes


@dataclass(frozen=True)
class LuaScript:
    name: str
    source: str
    sha: str

    @classmethod
    def load(cls, name: str) -> LuaScript:
        source = (LUA_DIR / f"{name}.lua").read_text()
        return cls(name, source, hashlib.sha1(source.encode()).hexdigest())


RESERVE: Final = LuaScript.load("reserve")
SET_STOCK: Final = LuaScript.load("set_stock")
HOLD: Final = LuaScript.load("hold")
CANCEL: Final = LuaScript.load("cancel")
TRANSITION: Final = LuaScript.load("transition")
RELEASE_HOLDS: Final = LuaScript.load("release_holds")
ALL_SCRIPTS: Final = (RESERVE, SET_STOCK, HOLD, CANCEL, TRANSITION, RELEASE_HOLDS)


async def load_all(redis: RedisClient) -> None:
    for script in ALL_SCRIPTS:
        await redis.script_load(script.source)


async def call(
    redis: RedisClient, script: LuaScript, keys: Sequence[str], args: Sequence[Arg]
) -> Any:
    try:
        return await redis.evalsha(script.sha, len(keys), *keys, *args)
    except NoScriptError:
        await redis.script_load(script.source)
        return await redis.evalsha(script.sha, len(keys), *keys, *args)


Call = tuple[LuaScript, Sequence[str], Sequence[Arg]]


async def call_pipelined(redis: RedisClient, calls: Sequence[Call]) -> list[Any]:
    """Send every call in one pipeline (one round trip per node); a failed call's slot in the
    result holds its exception instead of a reply."""
    replies = await _send(redis, calls)
    missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
    if missing:
        for script in {calls[i][0] for i in missing}:
            await redis.script_load(script.source)
        for i, reply in zip(missing, await _send(redis, [calls[i] for i in missing]), strict=True):
            replies[i] = reply
    return replies


async def _send(redis: RedisClient, calls: Sequence[Call]) -> list[Any]:
    pipe = redis.pipeline(transaction=False)
    for script, keys, args in calls:
        # execute_command, not pipe.evalsha: redis-py refuses EVALSHA in cluster pipelines, yet
        # routes it by its first key, which is all one-slot scripts need.
        pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
    return list(await pipe.execute(raise_on_error=False))
