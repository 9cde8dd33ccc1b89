"""The Dockerfile, .dockerignore and docker-compose.yml as the tests read them, without a Docker
engine (none runs here or in CI): the Dockerfile's instructions, the build context, the services
that run this project's image and their commands. Used by tests/test_docker.py (the image build
replayed) and tests/unit/test_docker_files.py (compose checked against the code)."""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final

import yaml

ROOT: Final = Path(__file__).resolve().parent.parent
APP_IMAGE: Final = "fulfillment:latest"


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str


def dockerfile() -> list[Instruction]:
    """Instructions with their continuation lines joined; comments dropped (as Docker does, also
    between continuation lines)."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append(Instruction(keyword.upper(), " ".join(args.split())))
        pending = ""
    assert not pending, "the Dockerfile ends in a continuation line"
    return instructions


def instruction(keyword: str) -> Instruction:
    (found,) = [i for i in dockerfile() if i.keyword == keyword]
    return found


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [
        line.strip().strip("/") for line in lines if line.strip() and not line.startswith("#")
    ]
    assert not [p for p in patterns if p.startswith("!")], "exceptions (!) are not replayed here"
    return patterns


def pattern_matches(pattern: tuple[str, ...], path: tuple[str, ...]) -> bool:
    """Docker's rule: `*` within one path segment, `**` any number of segments, anchored at the
    context's root."""
    if not pattern:
        return not path
    if pattern[0] == "**":
        return any(pattern_matches(pattern[1:], path[i:]) for i in range(len(path) + 1))
    return (
        bool(path)
        and PurePosixPath(path[0]).match(pattern[0])
        and pattern_matches(pattern[1:], path[1:])
    )


def context_files(patterns: list[str]) -> Iterator[Path]:
    """The build context: every file under the repository that .dockerignore leaves in."""
    split = [tuple(PurePosixPath(p).parts) for p in patterns]
    for directory, dirs, files in os.walk(ROOT):
        relative = Path(directory).relative_to(ROOT).parts
        dirs[:] = [d for d in dirs if not any(pattern_matches(p, (*relative, d)) for p in split)]
        for name in files:
            if not any(pattern_matches(p, (*relative, name)) for p in split):
                yield Path(directory) / name


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def app_services() -> dict[str, dict[str, Any]]:
    """The services that run this project's image (the others run third-party images)."""
    services: dict[str, dict[str, Any]] = compose()["services"]
    found = {n: s for n, s in services.items() if s.get("image") == APP_IMAGE or "build" in s}
    assert found.keys() >= {"api", "writers", "notices"}
    return found


def service_command(service: dict[str, Any]) -> list[str]:
    """The service's argv: its compose command, or the image's CMD (shell form, split)."""
    command = service.get("command")
    if command is None:
        argv = shlex.split(instruction("CMD").args)
        assert argv[0] == "exec", "a shell-form CMD must exec its server, or SIGTERM stops at sh"
        return argv[1:]
    return list(command) if isinstance(command, list) else shlex.split(command)


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]
