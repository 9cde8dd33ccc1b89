"""What the served OpenAPI schema declares beyond what Litestar derives from the handlers: the API
key, and every error each route can answer, in the one error shape.

Litestar declares a handler's success and a 400 in its own error shape, not ours; a client (or a
fuzzer) reading the schema must find every status the route can give. The declarations are added
here, for all routes at once, as the app receives each route, from the same facts the answers
come from: the key guard (`api.auth`), the body decoding (`api.bodies`), and the table below of
the domain errors each handler can raise (`api.errors` maps them to statuses).
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Final

# Litestar's schema plugin for msgspec structs is not public (2.x); ClosedStructs extends it.
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import Components, Schema, SecurityScheme
from litestar.plugins import ReceiveRoutePlugin
from litestar.routes import BaseRoute, HTTPRoute
from litestar.typing import FieldDefinition

from api.auth import OPEN_HANDLERS
from api.errors import DOMAIN_STATUS, ErrorBody

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator

API_KEY_SCHEME: Final = "apiKey"

# Per handler (by qualified name, as api.auth.ROUTE_SCOPES), the statuses its own logic can
# answer besides success; those every route of a kind shares are added in ErrorResponses. A test
# fails when a served route is missing here.
ROUTE_ERRORS: Final[dict[str, frozenset[int]]] = {
    "OrderController.place": frozenset({404, 409, 422, 503}),
    "OrderController.read": frozenset({404, 503}),
    "OrderController.cancel": frozenset({404, 409, 503}),
    "OrderController.delivered": frozenset({404, 409, 503}),
    "InventoryController.levels": frozenset({404, 503}),
    "InventoryController.stream": frozenset({404, 503}),
    "InventoryController.reserve": frozenset({404, 409, 503}),
    "InventoryController.release": frozenset({404, 503}),
    "InventoryController.set_level": frozenset({404, 409, 503}),
    "InventoryController.adjust_level": frozenset({404, 409, 503}),
    "WarehouseController.create": frozenset({409, 503}),
    "WarehouseController.list_all": frozenset(),
    "WarehouseController.read": frozenset({404, 503}),
    "FulfillmentController.fulfill_order": frozenset({404, 409, 503}),
    "FulfillmentController.report_unfulfillable": frozenset({404, 409, 503}),
    "NotificationController.send": frozenset({404, 503}),
    "NotificationController.status": frozenset({404, 503}),
    "healthz": frozenset(),
    "readyz": frozenset(),  # its 503 has the health body, declared on the handler
}
# A handler not listed yet: the statuses any store-backed route may give, rather than none.
UNLISTED_ROUTE: Final = frozenset({404, 409, 503})
BODY_ERRORS: Final = frozenset({400, 413, 415})
KEY_ERRORS: Final = frozenset({401, 403, 429})
# Handler arguments Litestar injects rather than reads from the request.
_CONTEXT_ARGUMENTS: Final = frozenset({"state", "request"})

# The `code`s of errors raised outside the domain, by status (the domain's come from
# api.errors.DOMAIN_STATUS).
_OTHER_CODES: Final[dict[int, tuple[str, ...]]] = {
    400: ("validation_error", "malformed_json"),
    401: ("unauthenticated",),
    403: ("forbidden",),
    404: ("not_found",),
    413: ("body_too_large",),
    415: ("unsupported_media_type",),
    429: ("rate_limited",),
    503: ("store_unavailable",),
}


def _error_codes() -> dict[int, list[str]]:
    codes: defaultdict[int, list[str]] = defaultdict(list)
    for status, code in DOMAIN_STATUS.values():
        codes[status].append(code)
    for status, others in _OTHER_CODES.items():
        codes[status].extend(others)
    return codes


def _error_response(status: int, codes: list[str]) -> ResponseSpec:
    retry = " `Retry-After` says when to retry." if status in (429, 503) else ""
    return ResponseSpec(
        ErrorBody,
        generate_examples=False,
        description=f"`error.code`: {', '.join(sorted(codes))}.{retry}",
    )


ERROR_RESPONSES: Final = {
    status: _error_response(status, codes) for status, codes in _error_codes().items()
}


def openapi_config(path: str, *, keys_required: bool) -> OpenAPIConfig:
    components = Components()
    if keys_required:
        components.security_schemes = {
            API_KEY_SCHEME: SecurityScheme(
                type="apiKey",
                name="X-API-Key",
                security_scheme_in="header",
                description="The client's API key (README, Security).",
            )
        }
    return OpenAPIConfig(
        title="Order fulfillment API", version="0.1.0", path=path, components=components
    )


class ErrorResponses(ReceiveRoutePlugin):
    """Declares each route's error answers, and the API key on the routes the guard covers."""

    def __init__(self, *, keys_required: bool) -> None:
        self._keys_required = keys_required

    def receive_route(self, route: BaseRoute) -> None:
        if not isinstance(route, HTTPRoute):
            return
        for handler in route.route_handlers:
            if not handler.resolve_include_in_schema():
                continue
            name = handler.fn.__qualname__
            statuses = set(ROUTE_ERRORS.get(name, UNLISTED_ROUTE))
            if handler.parsed_data_field is not None:
                statuses |= BODY_ERRORS
            if set(handler.parsed_fn_signature.parameters) - _CONTEXT_ARGUMENTS:
                statuses.add(400)  # a path, query or header parameter out of its limits
            if self._keys_required and name not in OPEN_HANDLERS:
                statuses |= KEY_ERRORS
                handler.security = [*(handler.security or ()), {API_KEY_SCHEME: []}]
            # A handler's own declaration of a status wins.
            handler.responses = {
                **{status: ERROR_RESPONSES[status] for status in sorted(statuses)},
                **(handler.responses or {}),
            }


class ClosedStructs(StructSchemaPlugin):
    """A struct that forbids unknown fields (every request body) says so in its schema
    (`additionalProperties: false`): Litestar leaves it open, and a client reading the schema
    would then expect extra fields to be ignored when they answer 400."""

    def to_openapi_schema(
        self, field_definition: FieldDefinition, schema_creator: SchemaCreator
    ) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        if field_definition.type_.__struct_config__.forbid_unknown_fields:
            schema.additional_properties = False
        return schema
