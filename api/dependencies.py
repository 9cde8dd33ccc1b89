"""What handlers are given, by name and type, instead of reaching into the app's state: the
worker's services (opened by the lifespan, api.state) and its metrics registry. A handler takes
them as `services: Injected[Services]` and `metrics: Injected[Metrics]`."""

from __future__ import annotations

from typing import Annotated, Final, TypeAlias, TypeVar

from litestar.datastructures import State
from litestar.di import Dependency, Provide
from litestar.params import SkipValidationMarker

from api.metrics import Metrics
from api.state import Services

T = TypeVar("T")
# Injected by the parameter's name, and passed as it is: the worker's own objects, with nothing
# in them for Litestar to validate.
Injected: TypeAlias = Annotated[T, Dependency(kind="named"), SkipValidationMarker()]


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
