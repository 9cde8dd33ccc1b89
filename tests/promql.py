"""The expressions of ops/alerts.yml and the Grafana dashboard, and the metric names a PromQL
expression selects, without a PromQL parser: what is left once strings, label matchers, ranges,
label lists, numbers and function calls are taken out. Enough for those expressions; `promtool
check rules` (see tests/unit/test_alerts.py) is what says that they parse."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Final

import yaml

ROOT: Final = Path(__file__).resolve().parent.parent
ALERTS: Final = ROOT / "ops" / "alerts.yml"
DASHBOARD: Final = ROOT / "ops" / "grafana" / "dashboards" / "fulfillment.json"

# Binary operators and modifiers spelled as words, and the literals Inf and NaN.
KEYWORDS: Final = frozenset(
    {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}
    | {"by", "without", "on", "ignoring", "group_left", "group_right"}
)
STRING: Final = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
MATCHERS: Final = re.compile(r"\{[^{}]*\}")
RANGE: Final = re.compile(r"\[[^\[\]]*\]")
# `by (a, b)`, `on(a)`, `group_left(a)`: label names, not metrics.
LABEL_LIST: Final = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
OFFSET: Final = re.compile(r"\boffset\s+-?\w+", re.IGNORECASE)
NUMBER: Final = re.compile(
    r"(?<![\w:$])(?:0x[0-9a-f]+|\d+(?:\.\d*)?(?:e[+-]?\d+)?|\.\d+(?:e[+-]?\d+)?)", re.IGNORECASE
)
GRAFANA_VARIABLE: Final = re.compile(r"\$\{?\w+\}?")
IDENTIFIER: Final = re.compile(r"[A-Za-z_:][\w:]*")


def metric_names(expr: str) -> set[str]:
    """Names of the series `expr` selects, e.g. {"http_responses_total"} for
    `sum by (status_class) (rate(http_responses_total{status_class="5xx"}[5m]))`."""
    text = STRING.sub(" ", expr)
    text = MATCHERS.sub(" ", text)
    text = RANGE.sub(" ", text)
    text = LABEL_LIST.sub(" ", text)
    text = OFFSET.sub(" ", text)
    text = GRAFANA_VARIABLE.sub(" ", text)
    text = NUMBER.sub(" ", text)
    names: set[str] = set()
    for match in IDENTIFIER.finditer(text):
        name = match.group()
        if name.lower() in KEYWORDS:
            continue
        if text[match.end() :].lstrip().startswith("("):  # a function or an aggregation
            continue
        names.add(name)
    return names


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard_expressions() -> list[tuple[str, str]]:
    """(panel title, expression) of every query of the dashboard, rows' nested panels included."""
    found: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            found.extend((panel["title"], t["expr"]) for t in panel.get("targets", []))
            walk(panel.get("panels", []))

    walk(json.loads(DASHBOARD.read_text())["panels"])
    return found


def queried_metric_names() -> dict[str, set[str]]:
    """Every metric name the alerts and the dashboard query -> where (alert or panel title)."""
    where: dict[str, set[str]] = {}
    queries = [(f"alert {r['alert']}", str(r["expr"])) for r in alert_rules()]
    queries += [(f"panel {title!r}", expr) for title, expr in dashboard_expressions()]
    for place, expr in queries:
        for name in metric_names(expr):
            where.setdefault(name, set()).add(place)
    return where
