"""The Docker image and docker-compose.yml, checked without a Docker engine (none runs here or in
CI): the Dockerfile's build steps replayed in a clean virtualenv on a copy of what it COPYs, and
compose's commands, ports, environment and mounted files checked against the code that reads them.

The replay runs the Dockerfile's own RUN lines with this machine's Python (the image's is
python:3.11-slim; CI runs 3.11 too) and needs PyPI, as the image build does.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.specifiers import SpecifierSet

ROOT: Final = Path(__file__).resolve().parent.parent
APP_IMAGE: Final = "fulfillment:latest"
# RUN lines the replay leaves out, and why: it would add a user to the machine running the test.
NOT_REPLAYED: Final = frozenset({"useradd --system --uid 10001 app"})
PIP_TIMEOUT_S: Final = 900.0
# What an app container must be told: the defaults (stores/settings.py) point at 127.0.0.1, which
# inside a container is the container itself.
STORE_VARIABLES: Final = ("REDIS_URL", "POSTGRES_DSN", "MONGO_URL", "MONGO_DB")
# os.environ.get("X"), env.get("X"), os.getenv("X"), os.environ["X"].
ENV_READ: Final = re.compile(
    r"""\b(?:environ|env|getenv)(?:\.get)?\s*[(\[]\s*["']([A-Z][A-Z0-9_]*)["']"""
)
SHELL_VARIABLE: Final = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


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
        return shlex.split(instruction("CMD").args)
    return list(command) if isinstance(command, list) else shlex.split(command)


def container_ports(service: dict[str, Any]) -> set[int]:
    """Container side of `[host_ip:]host_port[-range]:container_port`."""
    return {int(str(mapping).rsplit(":", 1)[1]) for mapping in service.get("ports", [])}


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def variables_the_code_reads() -> dict[str, Path]:
    """Environment variable -> a file that reads it: the image's packages (pyproject.toml) and the
    Dockerfile's CMD."""
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            for name in ENV_READ.findall(path.read_text()):
                found.setdefault(name, path)
    for name in SHELL_VARIABLE.findall(instruction("CMD").args):
        found.setdefault(name, ROOT / "Dockerfile")
    return found


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Bind mounts from the repository: target in the container -> source file or folder."""
    found: dict[str, Path] = {}
    for volume in service.get("volumes", []):
        source, target, *_ = str(volume).split(":")
        if source.startswith("./"):
            found[target] = ROOT / source
    return found


# --- The image -----------------------------------------------------------------------------


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

    # What the containers run resolves in that environment: granian's app, and each
    # `python -m` module with everything it imports (nothing connects at import).
    python = str(venv / "bin" / "python")
    for name, service in app_services().items():
        argv = service_command(service)
        if argv[0] == "granian":
            assert (venv / "bin" / "granian").exists()
            module, _, attribute = argv[-1].partition(":")
            code = f"import {module}; {module}.{attribute}"
        else:
            code = f"import {option(argv, '-m')}.__main__"
        result = subprocess.run(
            [python, "-c", code], cwd=workdir, env=env, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"{name}: {code}\n{result.stderr}"


def test_dockerfile_reads_its_dependencies_from_pyproject() -> None:
    """The dependency layer names neither a package nor a dependency: both live in pyproject.toml
    only, so the image cannot drift from it."""
    runs = " ".join(i.args for i in dockerfile() if i.keyword == "RUN")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for package in project["tool"]["setuptools"]["packages"]:
        assert not re.search(rf"(?<![\w./-]){package}(?![\w.-])", runs), package
    for requirement in project["project"]["dependencies"]:
        assert re.split(r"[\[<>=!~;, ]", requirement, maxsplit=1)[0] not in runs, requirement
    assert "['project']['dependencies']" in runs
    # Local state and caches stay out of the build context (and so out of the image).
    copied = [p.relative_to(ROOT).parts for p in context_files(dockerignore())]
    assert not [p for p in copied if {".git", ".venv", ".stack", "__pycache__"} & set(p)]


# --- docker-compose.yml ----------------------------------------------------------------------


def test_compose_commands_are_ones_the_code_has() -> None:
    from writers.__main__ import parse_args

    for name, service in app_services().items():
        argv = service_command(service)
        if argv[0] == "granian":
            module, _, attribute = argv[-1].partition(":")
            path = ROOT / Path(*module.split(".")).with_suffix(".py")
            tree = ast.parse(path.read_text())
            assigned = {
                t.id
                for node in tree.body
                if isinstance(node, ast.Assign)
                for t in node.targets
                if isinstance(t, ast.Name)
            }
            assert attribute in assigned, f"{name}: {module} has no module-level {attribute}"
            continue
        assert argv[:2] == ["python", "-m"], f"{name}: {argv}"
        module = argv[2]
        assert (ROOT / module / "__main__.py").exists(), f"{name}: no module {module}"
        assert module == "writers", f"{name}: add a check of {module}'s arguments here"
        parse_args(argv[3:])  # argparse exits on arguments it does not know


def test_compose_ports_are_the_ones_the_processes_listen_on() -> None:
    from api.health import healthz

    services = compose()["services"]
    cmd = shlex.split(instruction("CMD").args)
    api_port = int(option(cmd, "--port"))
    assert instruction("EXPOSE").args == str(api_port)
    assert container_ports(services["api"]) == {api_port}
    # The health check asks the API itself, on its port, for a route it has.
    check = " ".join(services["api"]["healthcheck"]["test"])
    url = urlsplit(re.search(r"http://[^'\" ]+", check)[0])  # type: ignore[index]
    assert url.port == api_port
    assert url.path in healthz.paths
    # The stores, as the app containers are told to reach them: service name and its port.
    env = compose()["x-app-env"]
    for variable, service in (
        ("REDIS_URL", "redis"),
        ("POSTGRES_DSN", "postgres"),
        ("MONGO_URL", "mongo"),
    ):
        target = urlsplit(env[variable])
        assert target.hostname == service, variable
        assert target.port in container_ports(services[service]), variable
    # Nothing is published beyond this machine (as ops/stack.sh binds the stores).
    for name, service in services.items():
        for mapping in service.get("ports", []):
            assert str(mapping).startswith("127.0.0.1:"), f"{name}: {mapping}"


def test_compose_variables_are_ones_the_code_reads() -> None:
    read = variables_the_code_reads()
    for name, service in app_services().items():
        environment = service.get("environment", {})
        assert isinstance(environment, dict), f"{name}: environment as a mapping"
        unknown = set(environment) - set(read)
        assert not unknown, f"{name} sets variables no code reads: {sorted(unknown)}"
        missing = set(STORE_VARIABLES) - set(environment)
        assert not missing, f"{name} is not told where the stores are: {sorted(missing)}"


def test_compose_mounts_exist() -> None:
    for name, service in compose()["services"].items():
        for target, source in mounts(service).items():
            assert source.exists(), f"{name}: {source} (mounted at {target}) does not exist"


def test_prometheus_scrapes_every_api_container_and_loads_the_alerts() -> None:
    services = compose()["services"]
    files = mounts(services["prometheus"])
    flags = dict(a.split("=", 1) for a in services["prometheus"]["command"] if "=" in a)
    config_path = flags["--config.file"]
    config = yaml.safe_load(files[config_path].read_text())
    for rule_file in config["rule_files"]:
        target = str(PurePosixPath(config_path).parent / rule_file)
        assert files[target] == ROOT / "ops" / "alerts.yml"
    (job,) = config["scrape_configs"]
    (discovery,) = job["dns_sd_configs"]
    # Docker's DNS answers a service name with every container's address: one target each.
    assert discovery["type"] == "A"
    for service in discovery["names"]:
        assert service in app_services()
        assert discovery["port"] in container_ports(services[service])
    assert services["api"]["environment"]["API_WORKERS"] == "1"  # one process per target
    assert job["metrics_path"] == "/metrics"


def test_grafana_provisions_the_dashboard_on_that_prometheus() -> None:
    services = compose()["services"]
    files = mounts(services["grafana"])
    provisioning = files["/etc/grafana/provisioning"]
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    url = urlsplit(source["url"])
    assert url.hostname == "prometheus"
    assert url.port in container_ports(services["prometheus"])
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "fulfillment.yml").read_text())[
        "providers"
    ]
    dashboards = files[provider["options"]["path"]]
    assert dashboards == ROOT / "ops" / "grafana" / "dashboards"
    home = PurePosixPath(
        services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    )
    assert (files[str(home.parent)] / home.name).exists()
    dashboard = json.loads((dashboards / "fulfillment.json").read_text())
    used = {
        target["datasource"]["uid"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    } | {panel["datasource"]["uid"] for panel in dashboard["panels"] if "datasource" in panel}
    assert used == {source["uid"]}
