"""Liveness (the process answers) and readiness (every store answers)."""

from __future__ import annotations

import asyncio
from typing import Final

import msgspec
from litestar import Response, get
from litestar.openapi import ResponseSpec

from api.state import Services
from api.types import Injected

READY_TIMEOUT_S: Final = 2.0


class Health(msgspec.Struct):
    status: str
    checks: dict[str, str] = {}


@get("/healthz", tags=["health"])
async def healthz() -> Health:
    return Health("ok")


@get(
    "/readyz",
    tags=["health"],
    responses={
        503: ResponseSpec(Health, description="a store does not answer: `checks` says which")
    },
)
async def readyz(services: Injected[Services]) -> Response[Health]:
    probes = {
        "redis": services.redis.ping(),
        "postgres": services.postgres.fetchval("SELECT 1"),
        "mongo": services.mongo.command("ping"),
    }
    checks: dict[str, str] = {}
    for name, probe in probes.items():
        try:
            await asyncio.wait_for(probe, READY_TIMEOUT_S)
            checks[name] = "ok"
        except Exception as exc:  # any failure means not ready; say which and why
            checks[name] = f"down: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return Response(
        Health("ok" if ready else "unavailable", checks), status_code=200 if ready else 503
    )
