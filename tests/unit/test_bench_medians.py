"""The benchmark's judged ratios without a store: each ratio is taken within its own round (a
load against the reference run just before it) and the median of the rounds is judged, so one
round the machine slowed moves one ratio, not the verdict; and what the CPUs did during each part
(busy, idle, stolen by the host) is read from /proc/stat's counters and lands in BENCHMARKS.md,
kept per part across runs of some parts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loadtest import host_cpu
from loadtest.bench import ApiRound, ApiSummary, EnginePair, EngineRun, Pipelined
from loadtest.report import (
    MACHINE,
    PartMachine,
    Results,
    machine_lines,
    redrawn,
    remember,
    write_report,
)


def wrk_run(rate: float) -> dict[str, Any]:
    return {"rate": rate, "p50_ms": 1.0, "p99_ms": rate / 1_000, "errors": 0}


def api_round(
    noop: float, evalsha_handler: float, batched: float, single: float, flash: float
) -> ApiRound:
    return ApiRound(
        wrk_run(noop), wrk_run(evalsha_handler), wrk_run(batched), wrk_run(single), wrk_run(flash)
    )


def test_the_api_is_judged_by_the_median_of_ratios_taken_within_each_round() -> None:
    rounds = [
        api_round(noop=9_000, evalsha_handler=4_000, batched=8_000, single=4_000, flash=8_000),
        # The machine slowed for this round's references only: their ratios alone are off.
        api_round(noop=5_000, evalsha_handler=1_000, batched=8_500, single=2_000, flash=7_650),
        api_round(noop=10_000, evalsha_handler=3_000, batched=7_000, single=3_500, flash=7_700),
    ]
    summary = ApiSummary.of(rounds)
    assert rounds[1].noop_ratio() == pytest.approx(1.7)
    assert summary.noop_ratio == pytest.approx(8_000 / 9_000)
    assert summary.evalsha_handler_ratio == pytest.approx(7_000 / 3_000)
    assert summary.batching_ratio == pytest.approx(2.0)
    assert summary.flash_ratio == pytest.approx(1.0)
    # The API's own figures are those of its median round, the references' their medians.
    assert summary.typical is rounds[0]
    assert summary.per_s == 8_000
    assert (summary.noop_per_s, summary.single_per_s, summary.flash_per_s) == (9_000, 3_500, 7_700)
    assert summary.evalsha_handler_per_s == 3_000


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


def test_a_span_in_which_no_counter_moved_claims_nothing() -> None:
    same = host_cpu.Sample(1.0, (5, 0, 5, 5, 0, 0, 0, 0))
    assert host_cpu.span(same, same) == host_cpu.Span(0.0, 0.0, 0.0, 0.0)


def test_a_sample_reads_this_machines_counters() -> None:
    first = host_cpu.sample()
    second = host_cpu.sample()
    assert len(first.ticks) == 8
    assert all(b >= a for a, b in zip(first.ticks, second.ticks, strict=True))


def test_a_run_of_some_parts_keeps_the_other_parts_machine_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("loadtest.report.BENCH_DIR", tmp_path)
    report = tmp_path / "BENCHMARKS.md"
    whole = Results()
    whole.machine["engine"] = PartMachine("2026-11-27 21:37", host_cpu.Span(32.4, 0.58, 0.42, 0))
    whole.machine["api"] = PartMachine("2026-11-27 21:38", host_cpu.Span(300, 0.6, 0.25, 0.15))
    remember(whole, report)
    api_again = Results()
    api_again.machine["api"] = PartMachine("2026-11-27 22:30", host_cpu.Span(290, 0.7, 0.3, 0))
    assert MACHINE in redrawn(api_again, whole=False)
    stored = remember(api_again, report)
    write_report(report, Results(), [], {MACHINE: machine_lines(stored.machine)}, "make bench")
    text = report.read_text()
    assert f"## {MACHINE}" in text
    assert "| engine | 2026-11-27 21:37 UTC | 32 s | 58% | 42% | 0.0% |" in text
    assert "| api | 2026-11-27 22:30 UTC | 290 s | 70% | 30% | 0.0% |" in text
    assert "21:38" not in text
