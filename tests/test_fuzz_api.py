"""The API fuzzed from its own OpenAPI schema: schemathesis generates valid and invalid requests
for every operation the served schema lists (bodies, path, query and header parameters, wrong
methods, missing or wrong API keys) against a real API process (`python -m api`, keys
configured), and checks every answer: never a 5xx, every status and body declared by the schema,
invalid input refused, valid input accepted, the key enforced.

Bounded: a fixed number of examples per operation and a time budget (FUZZ_MAX_EXAMPLES,
FUZZ_MAX_TIME_S); the seed is fixed so a run is repeatable (FUZZ_SEED to explore others).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from stores.mongo import MongoDatabase
from stores.redis import RedisClient
from stores.settings import Settings
from tests.api_process import api_process
from tests.conftest import store_env
from tests.notice_servers import free_port

ROOT: Final = Path(__file__).resolve().parent.parent
CONFIG: Final = Path(__file__).resolve().parent / "schemathesis.toml"
API_KEY: Final = "fuzz-key-7f3a9c2e51d84b06"
# Both scopes, and a rate limit the fuzzer never reaches: a 429 would hide what it probes.
API_KEYS: Final = {
    API_KEY: {"client": "fuzzer", "scopes": ["orders", "operator"], "rate": 1e6, "burst": 1_000_000}
}
MAX_EXAMPLES: Final = int(os.environ.get("FUZZ_MAX_EXAMPLES", "10"))
MAX_TIME_S: Final = int(os.environ.get("FUZZ_MAX_TIME_S", "45"))
SEED: Final = int(os.environ.get("FUZZ_SEED", "20261126"))
START_TIMEOUT_S: Final = 30.0
# An endless Server-Sent Events stream: every request to it would wait for the timeout.
NOT_FUZZED: Final = ("/inventory/stream",)


def call(base: str, method: str, path: str, body: Any = None) -> int:
    request = urllib.request.Request(
        base + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"X-API-Key": API_KEY, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


@pytest.fixture
def api(
    settings: Settings, redis: RedisClient, mongo: MongoDatabase, tmp_path: Path
) -> Iterator[str]:
    """A real API process on the (emptied) test stores, with a warehouse and some stock so that
    valid requests get past 404."""
    port = free_port()
    env = {**store_env(settings), "API_KEYS": json.dumps(API_KEYS), "API_KEYS_FILE": ""}
    log = tmp_path / "api.log"
    base = f"http://127.0.0.1:{port}"
    with api_process(env, port, log) as process:
        deadline = time.monotonic() + START_TIMEOUT_S
        while call(base, "GET", "/healthz") != 200:
            assert process.poll() is None, f"the API exited: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"the API did not start: {log.read_text()[-2000:]}"
            time.sleep(0.2)
        paris = {"lat": 48.85, "lon": 2.35}
        warehouse = {"warehouseId": "paris", "name": "Paris", "location": paris}
        assert call(base, "POST", "/warehouses", warehouse) == 201
        assert call(base, "PUT", "/inventory/sku-1/stock/paris", {"quantity": 100_000}) == 200
        yield base
    errors = [line for line in log.read_text().splitlines() if '"level":"ERROR"' in line]
    assert not errors, "the API logged errors while fuzzed:\n" + "\n".join(errors[:5])


def test_the_api_answers_every_generated_request_as_its_schema_says(api: str) -> None:
    schemathesis = str(Path(sys.executable).parent / "schemathesis")
    command = [
        schemathesis,
        "--config-file",
        str(CONFIG),
        "run",
        f"{api}/schema/openapi.json",
        "--header",
        f"X-API-Key: {API_KEY}",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--max-time",
        str(MAX_TIME_S),
        "--seed",
        str(SEED),
        "--request-timeout",
        "5",
        "--generation-database",
        "none",  # no .hypothesis/ left behind, and each run independent of the last
        "--no-color",
        *(arg for path in NOT_FUZZED for arg in ("--exclude-path", path)),
    ]
    started = time.monotonic()
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=MAX_TIME_S + 60
    )
    print(result.stdout[-3000:])
    print(f"schemathesis took {time.monotonic() - started:.0f} s")
    assert result.returncode == 0, f"the fuzzer found problems:\n{result.stdout[-12000:]}"
