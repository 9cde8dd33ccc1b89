"""The benchmark's baskets part without a store: the bodies it sends are baskets the API takes,
its wrk summaries are read into confirmed baskets and refusals, and its row and section land in
BENCHMARKS.md beside the others."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from api.bodies import decoder_for
from api.orders import OrderBody, PlaceBasket, PlaceOrder
from loadtest.baskets import BasketRun, report_lines
from loadtest.bench import BASKET_LINES, PRODUCTS, write_bodies
from loadtest.catalog import Traffic, product_id
from loadtest.report import (
    BASKETS,
    DERIVED_SECTIONS,
    LATENCY,
    ROWS_REPLACED,
    SCALING,
    SWARM,
    Results,
    Row,
    redrawn,
    update_report,
)


@pytest.mark.parametrize("lines", [*BASKET_LINES, 50])
def test_basket_bodies_are_baskets_of_distinct_catalogue_products(
    lines: int, tmp_path: Path
) -> None:
    path = write_bodies(tmp_path / "b.jsonl", Traffic(PRODUCTS, seed=lines), 200, lines)
    catalogue = {product_id(rank) for rank in range(PRODUCTS)}
    for raw in path.read_bytes().splitlines():
        body = decoder_for(OrderBody).decode(raw)  # as POST /orders reads it
        assert isinstance(body, PlaceBasket)
        products = [item.product_id for item in body.items]
        assert len(products) == len(set(products)) == lines
        assert set(products) <= catalogue
        assert all(1 <= item.quantity <= 4 for item in body.items)


def test_single_order_bodies_stay_single_orders(tmp_path: Path) -> None:
    path = write_bodies(tmp_path / "s.jsonl", Traffic(PRODUCTS, seed=1), 50)
    for raw in path.read_bytes().splitlines():
        assert isinstance(decoder_for(OrderBody).decode(raw), PlaceOrder)


def test_a_basket_cannot_hold_more_products_than_the_catalogue() -> None:
    with pytest.raises(ValueError):
        Traffic(3, seed=1).basket_body(4)


def summary(statuses: dict[str, int], socket_errors: int = 0) -> dict[str, Any]:
    """As loadtest/wrk_post.lua prints it with STATUSES=1."""
    answered = sum(statuses.values())
    refused = answered - statuses.get("201", 0)
    return {
        "requests": answered,
        "duration_s": 10.0,
        "rate": answered / 10,
        "errors": refused + socket_errors,
        "socket_errors": socket_errors,
        "p50_ms": 5.0,
        "p99_ms": 20.0,
        "max_ms": 40.0,
        "statuses": statuses,
    }


def test_only_201s_count_and_the_rest_are_named() -> None:
    run = BasketRun.of(3, summary({"201": 9_000, "409": 12, "503": 3}, socket_errors=2), 9.0, 3.0)
    assert run.per_s == 900
    assert run.lines_per_s == 2_700
    assert run.not_confirmed == {"409": 12, "503": 3, "socket": 2}
    assert run.refused_text() == "12 409, 3 503, 2 socket"
    assert run.cpu_ms_each(run.worker_cpu_s) == pytest.approx(1.0)


def test_the_table_compares_each_size_with_single_orders() -> None:
    single = BasketRun.of(0, summary({"201": 60_000}), 7.2, 2.4)
    runs = [BasketRun.of(n, summary({"201": 60_000 // (2 * n)}), 6.0, 1.5) for n in BASKET_LINES]
    lines = report_lines(single, runs, "2 cores, everything on loopback")
    table = [line for line in lines if line.startswith("| ")]
    assert table[0].startswith("| lines per basket | baskets/s | lines/s | vs single orders/s |")
    assert table[1].startswith("| single orders (reference) | 6,000 | 6,000 | 1.00x |")
    assert table[2].startswith("| 1 | 3,000 | 3,000 | 0.50x |")
    assert table[4].startswith("| 10 | 300 | 3,000 | 0.05x |")
    assert table[4].endswith("| 0 |")  # nothing but 201s
    assert "- machine: 2 cores, everything on loopback" in lines


def test_a_baskets_run_adds_its_row_and_section_and_leaves_the_rest(tmp_path: Path) -> None:
    report = tmp_path / "BENCHMARKS.md"
    before = [
        "# Benchmarks",
        "",
        "## Targets",
        "",
        "| what | measured | side by side | target | verdict |",
        "|---|---|---|---|---|",
        "| API: confirmed orders/s per worker (spread traffic) | 7,000 /s | | | |",
        "",
        f"## {LATENCY}",
        "",
        "the curve",
        "",
        f"## {SWARM}",
        "",
        "the swarm",
        "",
        "What the figures mean, where each missed target's time goes and what would close it: "
        "README.md, section Performance and scaling.",
        "",
    ]
    report.write_text("\n".join(before))
    results = Results()
    results.rows.append(Row("API: confirmed baskets/s per worker, 1 / 3 / 10 lines", "900 /s"))
    command = "python -m loadtest.bench --parts baskets"
    update_report(report, results, {BASKETS: ["the table"]}, command, "2026-11-26 13:45 UTC")
    after = report.read_text().split("\n")
    run = f"`{command}` (2026-11-26 13:45 UTC)"
    assert after[:4] == ["# Benchmarks", f"{ROWS_REPLACED} {run}", "", "## Targets"]
    assert after[7:9] == [
        before[6],
        "| API: confirmed baskets/s per worker, 1 / 3 / 10 lines | 900 /s |  |  |  |",
    ]
    baskets_at = after.index(f"## {BASKETS}")
    assert after.index(f"## {LATENCY}") < baskets_at < after.index(f"## {SWARM}")
    assert f"Measured by `{command}` on 2026-11-26 13:45 UTC" in after[baskets_at + 2]
    assert "the curve" in after and "the swarm" in after
    assert [line for line in after if line not in before] == [
        after[1],
        after[8],
        f"## {BASKETS}",
        after[baskets_at + 2],
        "the table",
    ]
    # A second run of some parts is named beside the first.
    update_report(report, Results([Row("x", "1")]), {}, "again", "2026-11-26 14:00 UTC")
    assert report.read_text().split("\n")[1] == (
        f"{ROWS_REPLACED} {run}; `again` (2026-11-26 14:00 UTC)"
    )


def test_a_baskets_run_leaves_the_sections_drawn_from_other_parts() -> None:
    baskets_only = Results(figures={"baskets_single_per_s": 6_000.0, "baskets_10_per_s": 300.0})
    assert redrawn(baskets_only, whole=False) == frozenset()
    assert redrawn(baskets_only, whole=True) == frozenset(DERIVED_SECTIONS)
    workers = Results(figures={"api_per_core": 5_000.0})
    assert redrawn(workers, whole=False) == {SCALING}
