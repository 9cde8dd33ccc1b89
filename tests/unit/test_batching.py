"""The micro-batcher (engine/batching.py): what arrives together is sent together, and its
bounded queue refuses (Overloaded) instead of growing while Redis is slow."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Sequence

import pytest

from engine.batching import Deliver, MicroBatcher, Release
from engine.errors import Overloaded


class SlowSender:
    """Sends a batch when the test opens the gate; echoes each item doubled."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()

    async def __call__(
        self, items: list[int], deliver: Deliver[int], release: Release
    ) -> Sequence[int]:
        self.batches.append(items)
        await self.gate.wait()
        return [item * 2 for item in items]


async def on_the_wire(send: SlowSender, batches: int) -> None:
    """Let the event loop run until `batches` batches were handed to the sender."""
    while len(send.batches) < batches:
        await asyncio.sleep(0)


def batcher(
    send: SlowSender, *, max_items: int = 100, max_queued: int = 100, max_wait_s: float = 10.0
) -> MicroBatcher[int, int]:
    return MicroBatcher(
        send, max_items=max_items, max_in_flight=1, max_queued=max_queued, max_wait_s=max_wait_s
    )


async def test_items_of_one_turn_share_a_batch() -> None:
    send = SlowSender()
    send.gate.set()
    results = await asyncio.gather(*(batcher(send).submit(i) for i in range(5)))
    assert results == [0, 2, 4, 6, 8]
    assert len(send.batches) == 5  # five batchers, one item each

    shared = batcher(send)
    send.batches.clear()
    assert await asyncio.gather(*(shared.submit(i) for i in range(5))) == [0, 2, 4, 6, 8]
    assert send.batches == [[0, 1, 2, 3, 4]]


async def test_a_batch_holds_at_most_max_items() -> None:
    send = SlowSender()
    send.gate.set()
    shared = batcher(send, max_items=2)
    await asyncio.gather(*(shared.submit(i) for i in range(5)))
    assert [len(batch) for batch in send.batches] == [2, 2, 1]


async def test_a_full_queue_refuses_at_once_and_sends_nothing_for_it() -> None:
    send = SlowSender()
    shared = batcher(send, max_queued=2)
    first = asyncio.ensure_future(shared.submit(1))
    await on_the_wire(send, 1)  # the first batch holds the one slot
    waiting = [asyncio.ensure_future(shared.submit(i)) for i in (2, 3)]
    await asyncio.sleep(0)
    assert shared.queued == 2
    with pytest.raises(Overloaded):
        await shared.submit(4)
    assert shared.refused == 1
    send.gate.set()
    assert await asyncio.gather(first, *waiting) == [2, 4, 6]
    assert 4 not in [item for batch in send.batches for item in batch]


async def test_an_item_that_waited_too_long_is_refused() -> None:
    send = SlowSender()
    shared = batcher(send, max_wait_s=0.02)
    first = asyncio.ensure_future(shared.submit(1))
    await on_the_wire(send, 1)
    with pytest.raises(Overloaded):
        await shared.submit(2)  # the one slot stays busy past max_wait_s
    send.gate.set()
    assert await first == 2
    assert send.batches == [[1]]


async def test_an_item_whose_caller_left_is_never_sent() -> None:
    send = SlowSender()
    shared = batcher(send)
    first = asyncio.ensure_future(shared.submit(1))
    await on_the_wire(send, 1)
    gone = asyncio.ensure_future(shared.submit(2))
    kept = asyncio.ensure_future(shared.submit(3))
    await asyncio.sleep(0)
    gone.cancel()
    send.gate.set()
    assert await first == 2 and await kept == 6
    assert send.batches == [[1], [3]]


async def test_a_failed_round_trip_reaches_every_caller_of_its_batch() -> None:
    async def broken(items: list[int], deliver: Deliver[int], release: Release) -> Sequence[int]:
        raise ConnectionError("cut")

    shared: MicroBatcher[int, int] = MicroBatcher(
        broken, max_items=10, max_in_flight=1, max_queued=10, max_wait_s=1.0
    )
    results = await asyncio.gather(shared.submit(1), shared.submit(2), return_exceptions=True)
    assert [type(r) for r in results] == [ConnectionError, ConnectionError]


async def test_an_early_delivery_answers_before_the_batch_ends() -> None:
    gate = asyncio.Event()

    async def partial(
        items: list[int], deliver: Deliver[int], release: Release
    ) -> Sequence[int | BaseException]:
        deliver(0, 10)
        await gate.wait()
        return [99, ValueError("second")]

    shared: MicroBatcher[int, int] = MicroBatcher(
        partial, max_items=10, max_in_flight=1, max_queued=10, max_wait_s=1.0
    )
    first = asyncio.ensure_future(shared.submit(1))
    second = asyncio.ensure_future(shared.submit(2))
    assert await first == 10  # answered while the batch still waits
    gate.set()
    with pytest.raises(ValueError, match="second"):
        await second


async def test_a_released_batch_frees_its_slot_while_it_still_waits() -> None:
    stuck = asyncio.Event()  # a resend to a moving slot, as far as this test goes
    sent = asyncio.Event()

    async def resending(
        items: list[int], deliver: Deliver[int], release: Release
    ) -> Sequence[int | BaseException]:
        if items == [1]:
            sent.set()
            release()  # its first round trip is over: only its resend is left
            await stuck.wait()
        return [item * 2 for item in items]

    shared: MicroBatcher[int, int] = MicroBatcher(
        resending, max_items=10, max_in_flight=1, max_queued=10, max_wait_s=1.0
    )
    waiting = asyncio.ensure_future(shared.submit(1))
    await sent.wait()
    async with asyncio.timeout(0.5):  # the one slot is free again: not refused as Overloaded
        assert await shared.submit(2) == 4
    assert not waiting.done()
    stuck.set()  # the slot has moved
    assert await waiting == 2


async def test_a_slot_is_freed_once_however_often_its_batch_releases_it() -> None:
    gates = {item: asyncio.Event() for item in (1, 2, 3)}
    sent: list[list[int]] = []

    async def send(
        items: list[int], deliver: Deliver[int], release: Release
    ) -> Sequence[int | BaseException]:
        sent.append(items)
        if items == [1]:
            release()
            release()
        await gates[items[0]].wait()
        if items == [2]:
            release()
            raise ConnectionError("cut after its release")
        return items

    shared: MicroBatcher[int, int] = MicroBatcher(
        send, max_items=1, max_in_flight=1, max_queued=10, max_wait_s=5.0
    )
    first = asyncio.ensure_future(shared.submit(1))
    second = asyncio.ensure_future(shared.submit(2))
    third = asyncio.ensure_future(shared.submit(3))
    for _ in range(10):
        await asyncio.sleep(0)
    assert sent == [[1], [2]]  # 2 took the slot 1 let go of; 3 waits for it
    gates[2].set()
    with pytest.raises(ConnectionError):
        await second
    gates[1].set()
    gates[3].set()
    assert await first == 1 and await third == 3
    assert sent == [[1], [2], [3]]


class Refused(Exception):
    """What the sender answers for an item it refuses."""


async def test_an_item_refused_by_the_sender_is_freed_without_the_collector() -> None:
    async def refuse(
        items: list[int], deliver: Deliver[int], release: Release
    ) -> Sequence[int | BaseException]:
        return [Refused() for _ in items]

    refusing = MicroBatcher(refuse, max_items=8, max_in_flight=1, max_queued=8, max_wait_s=1.0)
    gc.disable()  # a reference cycle would keep the error until a pass: none may run meanwhile
    try:
        try:
            await refusing.submit(1)
        except Refused as refused:
            error = weakref.ref(refused)
        await asyncio.sleep(0)  # the batch's own task ends
        assert error() is None
    finally:
        gc.enable()
