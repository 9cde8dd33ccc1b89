"""What handlers are given, by name and type, instead of reaching into the app's state: the
worker's services (opened by the lifespan, api.state) and its metrics registry. A handler takes
them as `services: Injected[Services]` and `metrics: Injected[Metrics]` (api.types)."""

from __future__ import annotations

from typing import Final

from litestar.datastructures import State
from litestar.di import Provide

from api.metrics import Metrics
from api.state import Services


def services_of(state: State) -> Services:
    services: Services = state.services
    return services


def metrics_of(state: State) -> Metrics:
    metrics: Metrics = state.metrics
    return metrics


DEPENDENCIES: Final = {
    "services": Provide(services_of, sync_to_thread=False),
    "metrics": Provide(metrics_of, sync_to_thread=False),
}
