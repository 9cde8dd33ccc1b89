"""The Litestar application: routes of every service area, one error shape, store lifecycle."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final

from litestar import Litestar
from litestar.datastructures import State
from litestar.plugins import ReceiveRoutePlugin
from litestar.routes import BaseRoute, HTTPRoute

from api.auth import ApiKeys, load_api_keys, require_api_key
from api.bodies import StrictJsonRequest
from api.dependencies import DEPENDENCIES
from api.errors import EXCEPTION_HANDLERS
from api.fulfillment import FulfillmentController
from api.health import healthz, readyz
from api.inventory import InventoryController
from api.metrics import Metrics, metrics
from api.notifications import NotificationController
from api.openapi import ClosedStructs, ErrorResponses, openapi_config
from api.order_intake import OrderIntake, serves
from api.orders import OrderController
from api.state import open_services
from api.warehouses import WarehouseController
from stores.settings import Settings, load_settings
from telemetry.logs import configure_json_logging

MAX_BODY_BYTES: Final = 16 * 1024  # the largest legitimate body is well under 1 KiB
# Python's collector runs a pass whenever enough new objects are still alive, and in a busy worker
# they are alive because their requests are in flight: each pass walks those requests' objects and
# finds almost no garbage, since reference counting frees them when the request ends. A serving
# worker runs the passes far less often; what waits longer is only the cycles it leaves.
# Measured: README, "The collector's young generation".
GC_THRESHOLDS: Final = (50_000, 50, 100)
SCHEMA_PATH: Final = "/schema"
log = logging.getLogger(__name__)


class OptionsListEveryMethod(ReceiveRoutePlugin):
    """Litestar 2.x makes a path's automatic OPTIONS answer when the path's first handler is
    registered, and keeps it when a controller adds a second method on the same path: `OPTIONS
    /warehouses` then answers `Allow: OPTIONS, POST` without GET. Each route as the app receives
    it gets that answer made again from its own, complete, method set."""

    def receive_route(self, route: BaseRoute) -> None:
        if isinstance(route, HTTPRoute) and "OPTIONS" in route.route_handler_map:
            handler, _ = route.route_handler_map["OPTIONS"]
            if handler.handler_name == "options_handler":  # Litestar's own, not an app handler
                handler(route.create_options_handler(route.path).fn)


class FulfillmentApi(Litestar):
    """The Litestar app, with POST /orders answered by api.order_intake before Litestar's own
    routing: everything else, lifespan included, is Litestar's."""

    def __init__(self, *, api_keys: ApiKeys | None, **config: Any) -> None:
        super().__init__(**config)
        self.order_intake = OrderIntake(self.state, api_keys, MAX_BODY_BYTES)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and serves(scope):
            await self.order_intake(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


@contextlib.contextmanager
def collector_for_serving() -> Iterator[None]:
    """The garbage collector as a serving worker wants it, put back as it was afterwards. What
    start-up made lives as long as the worker: frozen, it is kept out of the collector's full
    passes, which otherwise walk it all in the middle of requests."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def create_app(
    settings: Settings | None = None, *, batched: bool = True, api_keys: ApiKeys | None = None
) -> Litestar:
    """`api_keys=None` runs the API open: anyone may call every route (dev and tests)."""
    resolved = settings or load_settings()
    registry = Metrics()
    if api_keys is None:
        log.warning(
            "NO API KEYS CONFIGURED: the API is OPEN to anyone who can reach it "
            "(set API_KEYS_FILE or API_KEYS; see README, Security)"
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with open_services(resolved, batched=batched) as services:
            app.state.services = services
            services.stock_feed.on_low_stock = registry.count_low_stock
            with collector_for_serving():
                yield

    return FulfillmentApi(
        api_keys=api_keys,
        route_handlers=[
            OrderController,
            InventoryController,
            WarehouseController,
            FulfillmentController,
            NotificationController,
            healthz,
            readyz,
            metrics,
        ],
        lifespan=[lifespan],
        dependencies=DEPENDENCIES,
        # The schema stays readable without a key, like health, readiness and metrics.
        guards=[require_api_key(api_keys, (SCHEMA_PATH,))] if api_keys is not None else [],
        state=State({"metrics": registry}),
        before_send=[registry.count_response],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=MAX_BODY_BYTES,
        # Every handler's body is decoded here, strictly and only from application/json.
        request_class=StrictJsonRequest,
        openapi_config=openapi_config(SCHEMA_PATH, keys_required=api_keys is not None),
        # The schema declares every error a route can answer, and the key where one is needed.
        plugins=[
            ErrorResponses(keys_required=api_keys is not None),
            ClosedStructs(),
            OptionsListEveryMethod(),
        ],
        logging_config=None,
    )


class ServedApi:
    """What a server runs (`api.app:app`): the app, made from this process's settings the first
    time the server calls it (its lifespan start-up), so that importing this module reads no
    environment, opens no file and sets up no logging."""

    def __init__(self) -> None:
        self._app: Litestar | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            configure_json_logging()
            settings = load_settings()
            self._app = create_app(
                settings, batched=settings.api_batching, api_keys=load_api_keys(settings)
            )
        await self._app(scope, receive, send)

    @property
    def order_intake(self) -> OrderIntake | None:
        """POST /orders' intake, for the server's protocol to answer that route itself
        (api.order_protocol); None until the server has started the app."""
        return self._app.order_intake if isinstance(self._app, FulfillmentApi) else None


app = ServedApi()
