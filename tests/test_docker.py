"""The Docker image, checked without a Docker engine (none runs here or in CI): the Dockerfile's
build steps replayed in a clean virtualenv on a copy of what it COPYs, then what each container
runs imported there. (docker-compose.yml against the code: tests/unit/test_docker_files.py.)

The replay runs the Dockerfile's own RUN lines with this machine's Python (the image's is
python:3.11-slim; CI runs 3.11 too) and needs PyPI, as the image build does.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Final

import pytest
from packaging.specifiers import SpecifierSet

from tests.docker_files import (
    ROOT,
    app_services,
    context_files,
    dockerfile,
    dockerignore,
    option,
    service_command,
)

# RUN lines the replay leaves out, and why: it would add a user to the machine running the test.
NOT_REPLAYED: Final = frozenset({"useradd --system --uid 10001 app"})
PIP_TIMEOUT_S: Final = 900.0


def replay_copy(args: str, workdir: Path) -> None:
    """COPY of files or of the whole context (`.`) into the working directory."""
    *sources, destination = shlex.split(args)
    assert not [s for s in sources if s.startswith("--")], f"COPY flags are not replayed: {args}"
    assert destination in (".", "./"), f"COPY to {destination} is not replayed"
    for source in sources:
        if source == ".":
            for path in context_files(dockerignore()):
                target = workdir / path.relative_to(ROOT)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
        else:
            shutil.copy2(ROOT / source, workdir / Path(source).name)


@pytest.mark.slow
def test_dockerfile_build_steps_pass_in_a_clean_virtualenv(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # Nothing of this test run's environment may help: no outer virtualenv, no pip settings.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "PYTHON")) and k not in ("VIRTUAL_ENV", "PATH")
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    workdir = tmp_path / "root"
    replayed: list[str] = []
    for step in dockerfile():
        if step.keyword == "FROM":
            version = re.fullmatch(r"python:(\d+\.\d+)\S*", step.args)
            assert version, f"not a python base image: {step.args}"
            project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
            assert SpecifierSet(project["requires-python"]).contains(version[1])
        elif step.keyword == "ENV":
            env.update(pair.partition("=")[::2] for pair in shlex.split(step.args))
        elif step.keyword == "WORKDIR":
            workdir = tmp_path / "root" / step.args.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif step.keyword == "COPY":
            replay_copy(step.args, workdir)
        elif step.keyword == "RUN" and step.args in NOT_REPLAYED:
            continue
        elif step.keyword == "RUN":
            result = subprocess.run(
                ["/bin/sh", "-c", step.args],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=PIP_TIMEOUT_S,
                check=False,
            )
            assert result.returncode == 0, f"RUN {step.args}\n{result.stdout}\n{result.stderr}"
            replayed.append(step.args)
        elif step.keyword not in ("USER", "EXPOSE", "CMD"):  # run-time only: checked below
            pytest.fail(f"the replay does not know {step.keyword}: teach it before using it")
    assert any("pip install" in run for run in replayed)

    # What the containers run resolves in that environment: each `python -m` module with
    # everything it imports (nothing connects at import), and for the API the app it serves and
    # the loop and HTTP parser it runs them on.
    python = str(venv / "bin" / "python")
    for name, service in app_services().items():
        argv = service_command(service)
        module = option(argv, "-m")
        code = f"import {module}.__main__"
        if module == "api":
            code += (
                "; import importlib, uvloop, httptools"
                "; module, _, name = api.__main__.APP.partition(':')"
                "; getattr(importlib.import_module(module), name)"
            )
        result = subprocess.run(
            [python, "-c", code], cwd=workdir, env=env, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"{name}: {code}\n{result.stderr}"
