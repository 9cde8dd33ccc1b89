"""The Lua scripts as the loader hands them to Redis (engine/scripts.py): whole, their includes
expanded, and each declaring itself with `#!lua`."""

from __future__ import annotations

import re

from engine import scripts


def test_every_script_declares_itself_so_redis_refuses_it_whole() -> None:
    """`#!lua` (Redis 7 flags): a script that may write is refused at the limit before it runs.
    Without it Redis refuses a script only at its first write that may grow memory, so one that
    writes first with a DEL or a PEXPIRE runs on, past the limit (tests/test_store_full.py)."""
    sources = sorted(scripts.LUA_DIR.glob("*.lua"))
    assert sources
    for path in sources:
        assert path.read_text().startswith("#!lua"), path.name


def test_every_loaded_script_is_whole() -> None:
    for script in scripts.ALL_SCRIPTS:
        assert script.source.startswith("#!lua"), script.name
        assert "@include" not in script.source, script.name


def test_every_script_that_writes_a_level_appends_to_the_stream() -> None:
    """The inventory writer orders a product's states by how many entries its partition's stream
    had when it read them (lua/read_stock.lua): a script that changed a level without appending
    would leave MongoDB a state it never replaces. A coarse check, per script: the tests of each
    script check the branches."""
    writes_a_level = re.compile(r"redis\.call\('(HINCRBY|HSET)', stock_key")
    writers = [s for s in scripts.ALL_SCRIPTS if writes_a_level.search(s.source)]
    assert {s.name for s in writers} >= {"place_orders", "set_stock", "hold", "cancel", "reroute"}
    for script in writers:
        appends = re.findall(r"redis\.call\('XADD', stream\b", script.source)
        assert appends, f"{script.name}.lua changes a level and appends nothing"


def test_only_the_scripts_that_declare_no_writes_count_as_reads() -> None:
    """The runner sends no WAIT for replicas after a pipeline of reads (engine/scripts.py)."""
    reads = {s.name for s in scripts.ALL_SCRIPTS if s.read_only}
    assert reads == {"read_stock"}
    for script in scripts.ALL_SCRIPTS:
        if script.name not in reads:
            assert "no-writes" not in script.source.splitlines()[0], script.name
