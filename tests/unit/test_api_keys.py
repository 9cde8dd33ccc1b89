"""API keys without a request: loading them from a file or inline (api/auth.py), and a declared
scope for every route that is not open to all."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

import pytest
from msgspec.structs import replace

from api.app import create_app
from api.auth import OPEN_HANDLERS, ROUTE_SCOPES, ApiKeys, load_api_keys
from tests.conftest import TEST_SETTINGS

KEYS: Final = {
    "key-shop-a": {"client": "shop-a", "scopes": ["orders"]},
    "key-ops": {"client": "ops", "scopes": ["operator"], "rate": 1000, "burst": 1000},
}


def test_every_route_has_its_scopes_declared() -> None:
    app = create_app(TEST_SETTINGS, api_keys=ApiKeys.parse(json.dumps(KEYS)))
    names = {
        handler.fn.__qualname__
        for route in app.routes
        for handler in getattr(route, "route_handlers", [])
        if not route.path.startswith("/schema") and "OPTIONS" not in handler.http_methods
    }
    assert names - OPEN_HANDLERS - set(ROUTE_SCOPES) == set()


def test_keys_load_from_a_file_or_inline(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(KEYS))
    from_file = load_api_keys(replace(TEST_SETTINGS, api_keys_file=str(path)))
    inline = load_api_keys(replace(TEST_SETTINGS, api_keys_json=json.dumps(KEYS)))
    assert from_file is not None and inline is not None
    assert from_file.authenticate("key-ops").client == "ops"
    assert inline.authenticate("key-shop-a").scopes == frozenset({"orders"})
    assert load_api_keys(TEST_SETTINGS) is None
    with pytest.raises(Exception):  # noqa: B017 - msgspec's error: an unknown scope
        ApiKeys.parse(json.dumps({"k": {"client": "c", "scopes": ["admin"]}}))
