"""The alert rules (ops/alerts.yml) pass their unit tests under promtool, every alert has a case
that fires it and one that does not, and every expression the rules and the Grafana dashboard
hold parses. Store-free; the names they query are checked against a real /metrics exposition in
tests/test_metrics.py.

promtool is installed with the virtualenv by the project's setup (`ops/stack.sh install`, which
`make setup` and `make up` run): these tests fail rather than skip without it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Final

import pytest
import yaml

from tests.promql import ROOT, alert_rules, dashboard_expressions, metric_names

ALERT_TESTS: Final = ROOT / "ops" / "alerts.test.yml"
PROMTOOL_TIMEOUT_S: Final = 60.0
# Grafana's range variables, replaced by a fixed range so that promtool can parse the expression.
GRAFANA_RANGE: Final = re.compile(r"\$__(?:rate_interval|interval|range)\b|\$\{__\w+\}")


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: run `make setup` (ops/stack.sh install)")
    return path


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT_S,
        check=False,
    )


def test_alert_rules_pass_their_unit_tests() -> None:
    # Run from ops/: the test file names its rule file relative to itself.
    result = run_promtool("test", "rules", ALERT_TESTS.name, cwd=ALERT_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_case_that_fires_it_and_one_that_does_not() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(ALERT_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - fired == set(), "alerts no test fires"
    assert names - quiet == set(), "alerts no test shows quiet"
    assert (fired | quiet) - names == set(), "tests of alerts that do not exist"


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    """promtool has no bare expression check: the queries become recording rules, which
    `promtool check rules` parses."""
    rules = [
        {"record": f"dashboard:query_{i}", "expr": GRAFANA_RANGE.sub("5m", expr)}
        for i, (_, expr) in enumerate(dashboard_expressions())
    ]
    assert rules, "the dashboard has no queries"
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run_promtool("check", "rules", path.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("max(dead_letters) > 0", {"dead_letters"}),
        (
            'sum(rate(http_responses_total{status_class="5xx"}[5m])) / sum(rate(a_total[5m]))',
            {"http_responses_total", "a_total"},
        ),
        (
            "max by (group) (stream_backlog + stream_pending) > 1e4",
            {"stream_backlog", "stream_pending"},
        ),
        (
            "histogram_quantile(0.99, sum by (le) (rate(x_bucket[$__rate_interval])))",
            {"x_bucket"},
        ),
        ('x offset 5m and on(node) group_left(role) y{a="b c"}', {"x", "y"}),
        ("absent(stream_backlog)", {"stream_backlog"}),
    ],
)
def test_metric_names_of_an_expression(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names
