"""The metric names a PromQL expression selects, without a PromQL parser: what is left once
strings, label matchers, ranges, label lists, numbers and function calls are taken out. Enough
for the expressions of ops/alerts.yml and the Grafana dashboard; `promtool check rules` (see
tests/test_alerts.py) is what says that they parse."""

from __future__ import annotations

import re
from typing import Final

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
