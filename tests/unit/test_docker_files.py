"""docker-compose.yml and the Dockerfile read as texts, without a Docker engine: compose's
commands, ports, environment variables and mounted files checked against the code that reads
them, and the image's dependency list read from pyproject.toml. (The image build itself, replayed:
tests/test_docker.py.)"""

from __future__ import annotations

import ast
import json
import re
import shlex
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any, Final
from urllib.parse import urlsplit

import yaml

from api.__main__ import GRACEFUL_SHUTDOWN_S
from tests.docker_files import (
    ROOT,
    app_services,
    compose,
    context_files,
    dockerfile,
    dockerignore,
    instruction,
    option,
    service_command,
)

# What an app container must be told: the defaults (stores/settings.py) point at 127.0.0.1, which
# inside a container is the container itself.
STORE_VARIABLES: Final = ("REDIS_URL", "POSTGRES_DSN", "MONGO_URL", "MONGO_DB")
# os.environ.get("X"), env.get("X"), os.getenv("X"), os.environ["X"].
ENV_READ: Final = re.compile(
    r"""\b(?:environ|env|getenv)(?:\.get)?\s*[(\[]\s*["']([A-Z][A-Z0-9_]*)["']"""
)
SHELL_VARIABLE: Final = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


def container_ports(service: dict[str, Any]) -> set[int]:
    """Container side of `[host_ip:]host_port[-range]:container_port`."""
    return {int(str(mapping).rsplit(":", 1)[1]) for mapping in service.get("ports", [])}


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


# --- The image's dependencies ----------------------------------------------------------------


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
    import api.__main__
    import notify.__main__
    import writers.__main__

    parsers = {
        "api": api.__main__.parse_args,
        "writers": writers.__main__.parse_args,
        "notify": notify.__main__.parse_args,
    }
    for name, service in app_services().items():
        argv = shell_defaults(service_command(service), service.get("environment", {}))
        assert argv[:2] == ["python", "-m"], f"{name}: {argv}"
        module = argv[2]
        assert (ROOT / module / "__main__.py").exists(), f"{name}: no module {module}"
        assert module in parsers, f"{name}: add a check of {module}'s arguments here"
        args = parsers[module](argv[3:])  # argparse exits on arguments it does not know
        if module == "api":
            assert_module_level(args.app)


def shell_defaults(argv: list[str], environment: dict[str, Any]) -> list[str]:
    """The image's CMD is shell form: `${NAME:-default}` as the service's environment sets it."""
    expanded = []
    for word in argv:
        found = re.fullmatch(r"\$\{(\w+):-([^}]*)\}", word)
        expanded.append(str(environment.get(found[1], found[2])) if found else word)
    return expanded


def assert_module_level(app: str) -> None:
    """`module:attribute` names a module-level assignment, read without importing the module."""
    module, _, attribute = app.partition(":")
    path = ROOT / Path(*module.split(".")).with_suffix(".py")
    tree = ast.parse(path.read_text())
    assigned = {
        t.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name)
    }
    assert attribute in assigned, f"{module} has no module-level {attribute}"


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


def test_the_api_outlasts_its_graceful_shutdown_before_a_kill() -> None:
    grace = str(compose()["services"]["api"]["stop_grace_period"])
    assert grace.endswith("s") and int(grace[:-1]) > GRACEFUL_SHUTDOWN_S
