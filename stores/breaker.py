"""Circuit breakers around calls to a store or a server that can be down: after N consecutive
failures the breaker opens and calls fail at once (CircuitOpen) instead of each waiting out its own
connect timeout; after a cool-down it lets calls through again (half-open), and the first result
decides: a success closes it, a failure opens it for another cool-down.

`Breaker` keeps its state in the process (the API: one event loop, so no lock). `SharedBreaker`
keeps it in Redis, for callers that do not outlive one call: rq's worker forks a process per job,
so an in-process count would start from zero on every notice.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Final, Literal, Protocol

import redis

DEFAULT_FAILURES_TO_OPEN: Final = 5
DEFAULT_COOLDOWN_S: Final = 5.0
# A shared breaker forgets failures this long after the last one, so a few failures spread over
# a day never add up to an opening.
SHARED_FAILURE_MEMORY_S: Final = 300

State = Literal["closed", "open", "half-open"]


class CircuitOpen(Exception):
    """The breaker is open: the call was not made. Retry after `retry_after_s`."""

    def __init__(self, name: str, retry_after_s: float) -> None:
        super().__init__(f"circuit {name!r} is open; retry in {retry_after_s:.1f} s")
        self.name = name
        self.retry_after_s = retry_after_s


class _Guarded(Protocol):
    def check(self) -> None: ...
    def succeeded(self) -> None: ...
    def failed(self) -> None: ...
    def abandoned(self) -> None: ...


@contextlib.contextmanager
def _guard(breaker: _Guarded, errors: tuple[type[BaseException], ...]) -> Iterator[None]:
    """`with breaker.guard(TRANSIENT_ERRORS): await call()`: check, then record the outcome. The
    one rule both breakers share: only the store's own errors count as failures."""
    breaker.check()
    try:
        yield
    except errors:
        breaker.failed()
        raise
    except BaseException:
        breaker.abandoned()
        raise
    breaker.succeeded()


class Breaker:
    """In-process breaker. Only the errors named to `guard` count as failures: a bad query is the
    caller's bug, not the store being down."""

    def __init__(
        self,
        name: str,
        *,
        failures_to_open: int = DEFAULT_FAILURES_TO_OPEN,
        cooldown_s: float = DEFAULT_COOLDOWN_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.failures_to_open = failures_to_open
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> State:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at < self.cooldown_s:
            return "open"
        return "half-open"

    def check(self) -> None:
        """Raise CircuitOpen unless a call may go through now. Half-open lets one trial call
        through at a time; the others keep failing fast until it has answered."""
        state = self.state
        if state == "closed":
            return
        if state == "half-open" and not self._trial_running:
            self._trial_running = True
            return
        assert self._opened_at is not None
        remaining = self.cooldown_s - (self._clock() - self._opened_at)
        raise CircuitOpen(self.name, max(remaining, 0.0))

    def succeeded(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_running = False

    def failed(self) -> None:
        self._failures += 1
        if self._trial_running or self._failures >= self.failures_to_open:
            self._opened_at = self._clock()
        self._trial_running = False

    def abandoned(self) -> None:
        self._trial_running = False  # not the store's fault: neither opens nor closes

    guard = _guard


class SharedBreaker:
    """The same rule with its state in Redis (two keys per breaker), shared by every process.
    Half-open is not limited to one trial here: each process that finds the cool-down over tries,
    and the first failure opens it again (the failure count is still at the threshold)."""

    def __init__(
        self,
        connection: redis.Redis,
        name: str,
        *,
        failures_to_open: int = DEFAULT_FAILURES_TO_OPEN,
        cooldown_s: float = DEFAULT_COOLDOWN_S,
    ) -> None:
        self._redis = connection
        self.name = name
        self.failures_to_open = failures_to_open
        self.cooldown_s = cooldown_s
        self._failures_key = f"breaker:{name}:failures"
        self._open_key = f"breaker:{name}:open"

    def check(self) -> None:
        remaining_ms = int(self._redis.pttl(self._open_key))
        if remaining_ms > 0:
            raise CircuitOpen(self.name, remaining_ms / 1000)

    def succeeded(self) -> None:
        self._redis.delete(self._failures_key)

    def failed(self) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.incr(self._failures_key)
        pipe.expire(self._failures_key, SHARED_FAILURE_MEMORY_S)
        failures, _ = pipe.execute()
        if int(failures) >= self.failures_to_open:
            self._redis.set(self._open_key, 1, px=int(self.cooldown_s * 1000))

    def abandoned(self) -> None:
        """A failure that is not the store's: nothing to record."""

    guard = _guard
