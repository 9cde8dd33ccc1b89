"""A client of the live stock stream (GET /inventory/stream) that records how long each change
took from its append in Redis (the time in its stream entry ID) to its arrival here."""

from __future__ import annotations

import time

import httpx


async def watch_stock(base_url: str, product_id: str, delays_ms: list[float]) -> None:
    """Append one delay per `stock` event to `delays_ms` until cancelled."""
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=None) as client,
        client.stream("GET", "/inventory/stream", params={"productId": product_id}) as response,
    ):
        response.raise_for_status()
        async for line in response.aiter_lines():
            # Each `stock` event carries `id: <ms>-<seq>`, its entry in the partition stream.
            if line.startswith("id:"):
                appended_ms = int(line[3:].strip().split("-", 1)[0])
                delays_ms.append(time.time() * 1000 - appended_ms)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return (
        ordered[min(len(ordered) - 1, int(pct / 100 * len(ordered)))] if ordered else float("nan")
    )
