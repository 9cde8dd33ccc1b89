"""The live stock stream's low-stock thresholds (engine/stock_changes.py): the per-product
overrides as LOW_STOCK_THRESHOLDS spells them."""

from __future__ import annotations

import pytest

from engine.stock_changes import parse_overrides


def test_threshold_overrides_parse() -> None:
    assert parse_overrides(" sku-1=5, sku:2=50 ,") == {"sku-1": 5, "sku:2": 50}
    with pytest.raises(ValueError):
        parse_overrides("sku-1")
