"""Circuit breakers: the state machine on a fake clock, and the shared one on a real Redis."""

from __future__ import annotations

import time

import pytest

from stores.breaker import Breaker, CircuitOpen, SharedBreaker
from stores.redis import RedisClient, connect_sync_redis
from stores.settings import Settings


def test_breaker_opens_after_failures_and_half_opens_after_the_cooldown() -> None:
    now = [0.0]
    breaker = Breaker("t", failures_to_open=2, cooldown_s=10.0, clock=lambda: now[0])

    def fail() -> None:
        with pytest.raises(OSError), breaker.guard((OSError,)):
            raise OSError("down")

    def state() -> str:  # a call, so mypy does not narrow the property between asserts
        return breaker.state

    fail()
    assert state() == "closed"
    fail()
    assert state() == "open"
    with pytest.raises(CircuitOpen):
        breaker.check()
    now[0] = 10.0
    assert state() == "half-open"
    breaker.check()  # the one trial
    with pytest.raises(CircuitOpen):  # others wait for it
        breaker.check()
    breaker.failed()  # the trial failed: open for another cool-down
    assert state() == "open"
    now[0] = 20.0
    with breaker.guard((OSError,)):
        pass
    assert state() == "closed"


async def test_shared_breaker_opens_for_every_process_and_closes_on_success(
    settings: Settings, redis: RedisClient
) -> None:
    connection = connect_sync_redis(settings)
    first = SharedBreaker(connection, "smtp-test", failures_to_open=2, cooldown_s=0.3)
    second = SharedBreaker(connection, "smtp-test", failures_to_open=2, cooldown_s=0.3)
    first.failed()
    second.check()
    second.failed()
    with pytest.raises(CircuitOpen):  # opened by `second`, seen by `first`
        first.check()
    time.sleep(0.35)
    first.check()  # half-open: a trial may go
    first.failed()  # it failed: open again at once
    with pytest.raises(CircuitOpen):
        second.check()
    time.sleep(0.35)
    with second.guard((OSError,)):
        pass
    first.failed()  # one failure after a success does not open it
    first.check()
    connection.close()
