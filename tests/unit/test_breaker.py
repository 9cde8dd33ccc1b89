"""The circuit breaker's state machine (stores/breaker.py) on a fake clock: closed, open after
enough failures, half-open for one trial after the cool-down."""

from __future__ import annotations

import pytest

from stores.breaker import Breaker, CircuitOpen


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
