"""What the served OpenAPI schema declares: the API key where the guard asks for one, every error a
route can answer in the one error shape, request bodies closed to unknown fields. No store needed:
the schema is built from the routes. (The fuzzer driven by it: tests/test_fuzz_api.py.)"""

from __future__ import annotations

from typing import Any, Final

import pytest

from api.app import create_app
from api.auth import ApiKeys
from api.openapi import API_KEY_SCHEME, ROUTE_ERRORS
from tests.conftest import TEST_SETTINGS

KEYS: Final = ApiKeys.parse('{"k": {"client": "c", "scopes": ["orders", "operator"]}}')
OPEN_PATHS: Final = {"/healthz", "/readyz"}


def schema(*, keys: bool) -> dict[str, Any]:
    app = create_app(TEST_SETTINGS, api_keys=KEYS if keys else None)
    served: dict[str, Any] = app.openapi_schema.to_schema()
    return served


def operations(served: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in served["paths"].items()
        for method, operation in item.items()
    ]


def test_the_api_key_is_declared_on_every_route_that_needs_one() -> None:
    served = schema(keys=True)
    assert served["components"]["securitySchemes"][API_KEY_SCHEME] == {
        "type": "apiKey",
        "name": "X-API-Key",
        "in": "header",
        "description": "The client's API key (README, Security).",
    }
    for method, path, operation in operations(served):
        if path in OPEN_PATHS:
            assert "security" not in operation, (method, path)
            assert not {"401", "403", "429"} & set(operation["responses"]), (method, path)
        else:
            assert operation["security"] == [{API_KEY_SCHEME: []}], (method, path)
            assert {"401", "403", "429"} <= set(operation["responses"]), (method, path)


def test_an_open_api_declares_no_key() -> None:
    served = schema(keys=False)
    assert "securitySchemes" not in served.get("components", {})
    for method, path, operation in operations(served):
        assert "security" not in operation and "401" not in operation["responses"], (method, path)


@pytest.mark.parametrize("keys", [True, False])
def test_every_error_answer_is_declared_in_the_one_error_shape(keys: bool) -> None:
    served = schema(keys=keys)
    for method, path, operation in operations(served):
        responses = operation["responses"]
        if "requestBody" in operation:
            assert {"400", "413", "415"} <= set(responses), (method, path)
            assert operation["requestBody"]["content"].keys() == {"application/json"}
        if operation.get("parameters") or "{" in path:
            assert "400" in responses, (method, path)
        for status, response in responses.items():
            if status.startswith(("4", "5")) and path != "/readyz":
                body = response["content"]["application/json"]["schema"]
                assert body == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)
    assert "404" in served["paths"]["/orders/{order_id}"]["get"]["responses"]
    assert "422" in served["paths"]["/orders"]["post"]["responses"]
    placed = served["paths"]["/orders"]["post"]["responses"]["201"]
    assert placed["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OrderPlaced"
    }
    error = served["components"]["schemas"]["ErrorDetail"]
    assert set(error["required"]) == {"code", "message"}


def test_request_bodies_are_closed_to_unknown_fields() -> None:
    served = schema(keys=False)
    for method, path, operation in operations(served):
        if "requestBody" in operation:
            declared = operation["requestBody"]["content"]["application/json"]["schema"]
            for choice in declared.get(
                "oneOf", [declared]
            ):  # POST /orders: one product or a basket
                body = served["components"]["schemas"][choice["$ref"].rsplit("/", 1)[1]]
                assert body["additionalProperties"] is False, (method, path)
    assert served["components"]["schemas"]["Location"]["additionalProperties"] is False


def test_every_route_has_its_errors_declared() -> None:
    app = create_app(TEST_SETTINGS, api_keys=KEYS)
    names = {
        handler.fn.__qualname__
        for route in app.routes
        for handler in getattr(route, "route_handlers", [])
        if handler.resolve_include_in_schema()
    }
    assert names - set(ROUTE_ERRORS) == set(), "add them to api.openapi.ROUTE_ERRORS"


def test_an_order_body_is_one_product_or_a_basket() -> None:
    served = schema(keys=False)
    declared = served["paths"]["/orders"]["post"]["requestBody"]["content"]["application/json"]
    assert declared["schema"] == {
        "oneOf": [
            {"$ref": "#/components/schemas/PlaceOrder"},
            {"$ref": "#/components/schemas/PlaceBasket"},
        ]
    }
    basket = served["components"]["schemas"]["PlaceBasket"]
    assert set(basket["required"]) == {"items", "customerLocation"}
    assert (
        basket["properties"]["items"]["minItems"],
        basket["properties"]["items"]["maxItems"],
    ) == (
        1,
        50,
    )
