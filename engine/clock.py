"""The wall clock in ms, as every command carries it (expiries, event times, the records'
creation): one spelling of it."""

from __future__ import annotations

import time


def now_ms() -> int:
    return int(time.time() * 1000)
