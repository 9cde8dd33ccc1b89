"""The garbage collector a serving worker runs with, and the one it gives back."""

from __future__ import annotations

import gc

import pytest

from api.app import GC_THRESHOLDS, collector_for_serving


def test_serving_freezes_what_start_up_made_and_collects_young_objects_less_often() -> None:
    before = gc.get_threshold()
    made_at_start_up = [[n] for n in range(1_000)]
    with collector_for_serving():
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() >= len(made_at_start_up)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_thresholds_are_given_back_when_serving_ends_in_an_error() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), collector_for_serving():
        raise RuntimeError("worker stopping")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
