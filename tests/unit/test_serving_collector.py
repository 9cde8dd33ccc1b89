"""The garbage collector a serving worker runs with, and the one it gives back."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from api.app import GC_THRESHOLDS, collector_for_serving

# Not Python's defaults and not the serving ones: a test that restores anything else fails.
OTHER_THRESHOLDS = (1234, 5, 6)


@pytest.fixture(autouse=True)
def other_thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    gc.set_threshold(*OTHER_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*saved)


def test_serving_freezes_what_start_up_made_and_collects_less_often() -> None:
    frozen_before = gc.get_freeze_count()
    made_at_start_up = [[n] for n in range(1_000)]
    with collector_for_serving():
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() >= frozen_before + len(made_at_start_up)
    assert gc.get_threshold() == OTHER_THRESHOLDS
    assert gc.get_freeze_count() == 0


def test_thresholds_are_given_back_when_serving_ends_in_an_error() -> None:
    with pytest.raises(RuntimeError), collector_for_serving():
        raise RuntimeError("worker stopping")
    assert gc.get_threshold() == OTHER_THRESHOLDS
    assert gc.get_freeze_count() == 0
