"""loadtest/app_cost.py, the request path's CPU per order apart from the HTTP server: every order
it sends goes through the real app into a Redis of its own and is placed (it raises otherwise),
and each run gives its figure."""

from __future__ import annotations

from loadtest.app_cost import measure


async def test_app_cost_places_every_order_it_sends_and_reports_each_run() -> None:
    figures = await measure(orders=400, callers=8, runs=2)
    assert len(figures) == 2
    assert all(0 < us_per_order < 100_000 for us_per_order in figures)
