"""`python -m notify`: the notice worker's command takes one of its three actions and nothing else
(argparse's usage error, exit code 2, as scripts calling it expect)."""

from __future__ import annotations

import pytest

from notify.__main__ import ACTIONS, main, parse_args


def test_the_actions_are_the_worker_the_failed_list_and_replay() -> None:
    assert set(ACTIONS) == {"worker", "failed", "replay"}
    for action in ACTIONS:
        assert parse_args([action]).action == action


@pytest.mark.parametrize("argv", [[], ["notices", "worker"], ["list"], ["worker", "extra"]])
def test_anything_else_is_a_usage_error(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2


def test_a_setting_it_cannot_read_ends_the_command_with_its_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_WAIT_REPLICAS", "two")
    with pytest.raises(SystemExit) as exited:
        main(["failed"])
    assert str(exited.value.code).startswith("invalid setting:")
