"""The gateway's template against the worker's settings: what the two must agree on."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from api.__main__ import KEEP_ALIVE_S

TEMPLATE: Final = Path(__file__).resolve().parents[2] / "ops" / "gateway" / "nginx.conf.template"


def test_the_gateway_closes_an_idle_connection_before_the_worker_does() -> None:
    """Else a POST could go out on a connection the worker is closing, and nginx does not send a
    POST again once it went out: the client would get a 502 for an order never placed."""
    upstream = re.search(r"upstream api \{(.*?)\n    \}", TEMPLATE.read_text(), re.S)
    assert upstream is not None
    timeout = re.search(r"^\s*keepalive_timeout (\d+)s;", upstream[1], re.M)
    assert timeout is not None, "keepalive_timeout in the upstream block, in seconds"
    assert int(timeout[1]) < KEEP_ALIVE_S
