"""The shared circuit breaker on a real Redis (the state machine on a fake clock:
tests/unit/test_breaker.py)."""

from __future__ import annotations

import time

import pytest

from stores.breaker import CircuitOpen, SharedBreaker
from stores.redis import RedisClient, connect_sync_redis
from stores.settings import Settings


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
