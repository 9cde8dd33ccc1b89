"""`python -m notify worker` runs the notice worker (rq, with its scheduler, which enqueues the
retries when their backoff is over) until SIGTERM/SIGINT. `python -m notify failed` lists the
notices that failed for good with their last error, `python -m notify replay` re-enqueues them
(after the cause was fixed). rq's Redis is configured from the environment (`stores.settings`:
QUEUE_REDIS_URL, by default the engine's Redis), and so are the channels (SMTP_*, SMS_URL)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Final

from notify.jobs import Notices
from stores.redis import connect_sync_redis
from stores.settings import Settings, settings_for_a_command
from telemetry.pipes import run_for_a_pipe


def work(notices: Notices) -> int:
    notices.work()
    return 0


def list_failed(notices: Notices) -> int:
    """One tab-separated line per failed notice on stdout (job ID, last error); the count on
    stderr."""
    failed = notices.failed()
    for notice in failed:
        print(f"{notice.job_id}\t{notice.error}")
    print(f"{len(failed)} failed notice(s)", file=sys.stderr)
    return 0


def replay_failed(notices: Notices) -> int:
    print(f"{notices.replay_failed()} failed notice(s) re-enqueued", file=sys.stderr)
    return 0


ACTIONS: Final[dict[str, Callable[[Notices], int]]] = {
    "worker": work,
    "failed": list_failed,
    "replay": replay_failed,
}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m notify", description=__doc__)
    parser.add_argument("action", choices=ACTIONS)
    return parser.parse_args(argv)


def run(settings: Settings, action: str) -> int:
    connection = connect_sync_redis(settings)
    try:
        return ACTIONS[action](Notices(connection))
    finally:
        connection.close()


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    settings = settings_for_a_command()
    return run(settings, args.action)


if __name__ == "__main__":
    sys.exit(run_for_a_pipe(main, sys.argv[1:]))
