"""The benchmark's judged ratios without a store: each ratio is taken within its own round (a
load against the reference run just before it) and the median of the rounds is judged, so one
round the machine slowed moves one ratio, not the verdict; and what the CPUs did during each part
(busy, idle, stolen by the host) is read from /proc/stat's counters and lands in BENCHMARKS.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loadtest import host_cpu
from loadtest.bench import ApiRound, EnginePair, EngineRun, Pipelined
from loadtest.report import MACHINE, Results, machine_lines, write_report


def wrk_run(rate: float) -> dict[str, Any]:
    return {"rate": rate, "p50_ms": 1.0, "p99_ms": 2.0, "errors": 0}


def test_an_api_round_sets_the_api_against_the_references_of_its_own_round() -> None:
    slowed = ApiRound(noop=wrk_run(5_000), batched=wrk_run(6_000), single=wrk_run(2_000))
    assert slowed.noop_ratio() == pytest.approx(1.2)
    assert slowed.batching_ratio() == pytest.approx(3.0)


def test_an_engine_run_judges_the_median_of_its_pairs() -> None:
    def pair(tiny_per_s: float, placed_per_s: float) -> EnginePair:
        return EnginePair(
            Pipelined(tiny_per_s, 0, tiny_per_s * 2), Pipelined(placed_per_s, 1, placed_per_s)
        )

    # The middle pair's tiny script ran while the machine was slow: its ratio alone is off.
    run = EngineRun(8, [pair(100_000, 40_000), pair(50_000, 45_000), pair(120_000, 54_000)])
    assert run.ratios() == pytest.approx([0.4, 0.9, 0.45])
    assert run.ratio() == pytest.approx(0.45)
    assert run.core_ratios() == pytest.approx([0.2, 0.45, 0.225])
    assert run.core_ratio() == pytest.approx(0.225)
    assert run.per_s() == 45_000
    assert run.errors() == 3


def test_a_span_splits_the_cpus_time_into_busy_idle_and_stolen() -> None:
    # user nice system idle iowait irq softirq steal
    before = host_cpu.Sample(10.0, (100, 0, 50, 1_000, 10, 0, 5, 20))
    after = host_cpu.Sample(15.0, (400, 0, 150, 1_380, 20, 0, 15, 120))
    span = host_cpu.span(before, after)
    # moved: 300 + 100 + 380 + 10 + 10 + 100 = 900 ticks
    assert span.seconds == 5.0
    assert span.idle == pytest.approx(390 / 900)
    assert span.stolen == pytest.approx(100 / 900)
    assert span.busy == pytest.approx(410 / 900)


def test_a_sample_reads_this_machines_counters() -> None:
    first = host_cpu.sample()
    second = host_cpu.sample()
    assert len(first.ticks) == 8
    assert all(b >= a for a, b in zip(first.ticks, second.ticks, strict=True))
    span = host_cpu.span(first, second)
    assert span.busy + span.idle + span.stolen == pytest.approx(1.0)


def test_the_machine_section_lists_each_part(tmp_path: Path) -> None:
    spans = [
        ("engine", host_cpu.Span(32.4, 0.58, 0.42, 0.0)),
        ("api", host_cpu.Span(167.0, 0.6, 0.25, 0.15)),
    ]
    report = tmp_path / "BENCHMARKS.md"
    write_report(report, Results(), [], {MACHINE: machine_lines(spans)}, "make bench")
    text = report.read_text()
    assert f"## {MACHINE}" in text
    assert "| engine | 32 s | 58% | 42% | 0.0% |" in text
    assert "| api | 167 s | 60% | 25% | 15.0% |" in text
