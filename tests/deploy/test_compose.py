"""The production deployment: docker-compose.yml, the Dockerfile, .dockerignore and yugabyte/.

No container engine runs where the tests run, so the files are read and held to the contract:
every service waits for what it needs to be healthy, gets every variable it needs, and never has
a secret written into the file. ``REQUIRED_ENVIRONMENT`` is the one statement of which variables
each service needs.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import ipaddress
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from parley.services import SERVICES, ServiceSpec
from servicekit.settings import DEFAULT_PORTS
from tests.support.database import StorageServers
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]

# Every variable each service needs in production (PARLEY_ENV=production is checked separately).
REQUIRED_ENVIRONMENT: dict[str, frozenset[str]] = {
    "identity_service": frozenset(
        {"DATABASE_URL", "REDIS_URL", "OIDC_ISSUER", "API_AUDIENCE", "PUBLIC_URL", "SMTP_URL"}
    ),
    "conversations_service": frozenset(
        {"DATABASE_URL", "REDIS_URL", "OIDC_ISSUER", "API_AUDIENCE"}
    ),
    "messages_service": frozenset(
        {
            "DATABASE_URL",
            "REDIS_URL",
            "OIDC_ISSUER",
            "API_AUDIENCE",
            "CONVERSATIONS_URL",
            "SERVICE_CLIENT_ID",
            "SERVICE_CLIENT_SECRET",
        }
    ),
    "realtime_service": frozenset(
        {
            "REDIS_URL",
            "OIDC_ISSUER",
            "API_AUDIENCE",
            "CONVERSATIONS_URL",
            "SERVICE_CLIENT_ID",
            "SERVICE_CLIENT_SECRET",
        }
    ),
    "bff": frozenset(
        {
            "REDIS_URL",
            "PUBLIC_URL",
            "OIDC_ISSUER",
            "OIDC_CLIENT_ID",
            "OIDC_CLIENT_SECRET",
            "API_AUDIENCE",
            "SESSION_SECRET",
            "CONVERSATIONS_URL",
            "MESSAGES_URL",
            "REALTIME_URL",
            "IDENTITY_URL",
        }
    ),
}
# SMTP_URL carries the mail server's credentials.
SECRETS = frozenset(
    {
        "SESSION_SECRET",
        "IDENTITY_SESSION_SECRET",
        "OIDC_CLIENT_SECRET",
        "SERVICE_CLIENT_SECRET",
        "SMTP_URL",
    }
)
# The variable through which a service reaches another, by the compose service it must name.
SERVICE_URLS = {
    "CONVERSATIONS_URL": "conversations_service",
    "MESSAGES_URL": "messages_service",
    "REALTIME_URL": "realtime_service",
    "IDENTITY_URL": "identity_service",
}
# Only these face the outside: the browser talks to the BFF and is redirected to the provider.
PUBLISHED = frozenset({"bff", "identity_service"})

HEALTHY = "service_healthy"
COMPLETED = "service_completed_successfully"
# What each service must find running (or finished) before it starts.
EXPECTED_DEPENDENCIES: dict[str, dict[str, str]] = {
    "migrate": {"yugabytedb": HEALTHY, "yugabytedb-init": COMPLETED},
    "identity_service": {"migrate": COMPLETED, "yugabytedb": HEALTHY, "redis": HEALTHY},
    "conversations_service": {
        "migrate": COMPLETED,
        "yugabytedb": HEALTHY,
        "redis": HEALTHY,
        "identity_service": HEALTHY,
    },
    "messages_service": {
        "migrate": COMPLETED,
        "yugabytedb": HEALTHY,
        "redis": HEALTHY,
        "identity_service": HEALTHY,
        "conversations_service": HEALTHY,
    },
    "realtime_service": {
        "redis": HEALTHY,
        "identity_service": HEALTHY,
        "conversations_service": HEALTHY,
    },
    "bff": {
        "redis": HEALTHY,
        "identity_service": HEALTHY,
        "conversations_service": HEALTHY,
        "messages_service": HEALTHY,
        "realtime_service": HEALTHY,
    },
}
YSQL_PORT = 5433
DATABASE_USERS = sorted(
    name for name, needs in REQUIRED_ENVIRONMENT.items() if "DATABASE_URL" in needs
)


@cache
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def environment(service: str) -> dict[str, str]:
    """A service's environment as a mapping, whichever of compose's two forms it is written in."""
    declared = services()[service].get("environment") or {}
    if isinstance(declared, list):
        declared = dict(entry.partition("=")[::2] for entry in declared)
    return {name: str(value) for name, value in declared.items()}


def with_defaults(value: str) -> str:
    """``value`` as compose interpolates it when only the defaults (``${NAME:-default}``) apply."""
    return re.sub(r"\$\{\w+:?-([^}]*)\}", r"\1", value)


def container_ports(service: Mapping[str, Any]) -> list[int]:
    """Ports a service listens on in its container, from ``ports`` and ``expose``."""
    found = [int(str(port)) for port in service.get("expose", [])]
    for port in service.get("ports", []):
        target = port["target"] if isinstance(port, dict) else str(port).rsplit(":", 1)[-1]
        found.append(int(str(target).split("/")[0]))
    return found


def healthcheck_command(service: str) -> list[str]:
    test = services()[service].get("healthcheck", {}).get("test", [])
    return [test] if isinstance(test, str) else [str(part) for part in test]


def dependencies(service: str) -> dict[str, str]:
    declared = services()[service].get("depends_on", {})
    assert isinstance(declared, dict), f"{service}: depends_on must name a condition per service"
    return {name: entry.get("condition", "") for name, entry in declared.items()}


def is_one_shot(service: str) -> bool:
    return str(services()[service].get("restart", "no")) == "no"


@cache
def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        pending = ""
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, arguments in dockerfile():
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, arguments))
    return stages


def packages_left_out_of_image() -> list[str]:
    runs = " ".join(arguments for keyword, arguments in dockerfile() if keyword == "RUN")
    return sorted(set(re.findall(r"--no-install-package\s+(\S+)", runs)))


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_the_contract_names_every_parley_service() -> None:
    assert set(REQUIRED_ENVIRONMENT) == set(DEFAULT_PORTS) == {spec.name for spec in SERVICES}
    assert set(EXPECTED_DEPENDENCIES) == set(DEFAULT_PORTS) | {"migrate"}


@pytest.mark.parametrize("service", sorted(DEFAULT_PORTS))
def test_each_service_runs_the_project_image_with_its_serve_command(service: str) -> None:
    definition = services()[service]
    assert definition["command"] == ["serve", service]
    assert definition["build"]["dockerfile"] == "Dockerfile"
    assert (ROOT / definition["build"]["context"]).resolve() == ROOT
    assert (ROOT / "Dockerfile").is_file()


def test_services_and_migrations_share_one_image() -> None:
    parley = [*DEFAULT_PORTS, "migrate"]
    assert len({services()[name]["image"] for name in parley}) == 1
    assert len({json.dumps(services()[name]["build"], sort_keys=True) for name in parley}) == 1


@pytest.mark.parametrize("service", [*sorted(DEFAULT_PORTS), "yugabytedb", "redis"])
def test_every_long_running_service_has_a_healthcheck(service: str) -> None:
    healthcheck = services()[service].get("healthcheck", {})
    assert not healthcheck.get("disable", False)
    command = healthcheck_command(service)
    assert command[:1] in (["CMD"], ["CMD-SHELL"]), f"{service}: no usable healthcheck test"
    assert not is_one_shot(service), f"{service} must be restarted when it dies"


@pytest.mark.parametrize(("service", "port"), sorted(DEFAULT_PORTS.items()))
def test_parley_healthchecks_ask_healthz_with_the_python_in_the_image(
    service: str, port: int
) -> None:
    command = healthcheck_command(service)
    # The slim runtime image has no curl or wget; its Python is on PATH.
    assert command[:2] == ["CMD", "python"]
    assert f"http://127.0.0.1:{port}/healthz" in " ".join(command)


def test_yugabytedb_and_redis_healthchecks_query_the_server() -> None:
    yugabytedb = " ".join(healthcheck_command("yugabytedb"))
    assert re.search(r"ysqlsh|pg_isready", yugabytedb)
    assert str(YSQL_PORT) in yugabytedb
    assert healthcheck_command("redis")[1:] == ["redis-cli", "ping"]
    assert services()["redis"]["image"].startswith("redis:7")


@pytest.mark.parametrize("service", sorted(compose()["services"]))
def test_every_dependency_waits_for_a_state_of_a_service_that_exists(service: str) -> None:
    for dependency, condition in dependencies(service).items():
        assert dependency in services(), f"{service} depends on unknown {dependency}"
        if condition == HEALTHY:
            assert healthcheck_command(dependency), f"{dependency} can never become healthy"
        elif condition == COMPLETED:
            assert is_one_shot(dependency), f"{dependency} is restarted, so it never completes"
        else:
            pytest.fail(f"{service} → {dependency}: condition {condition!r} waits for nothing")


@pytest.mark.parametrize("service", sorted(EXPECTED_DEPENDENCIES))
def test_each_service_waits_for_what_it_needs(service: str) -> None:
    assert EXPECTED_DEPENDENCIES[service].items() <= dependencies(service).items()


def test_migrations_run_once_with_the_wait_script_from_the_image() -> None:
    migrate = services()["migrate"]
    assert is_one_shot("migrate")
    script = next(part for part in migrate["entrypoint"] if part.endswith("migrate.sh"))
    # The image's WORKDIR is /app and holds the source tree.
    assert ("WORKDIR", "/app") in dockerfile_stages()[-1]
    assert (ROOT / script.removeprefix("/app/")).is_file()


@pytest.mark.parametrize("service", sorted(REQUIRED_ENVIRONMENT))
def test_each_service_gets_every_variable_it_needs(service: str) -> None:
    variables = environment(service)
    missing = REQUIRED_ENVIRONMENT[service] - {name for name, value in variables.items() if value}
    assert not missing, f"{service} lacks {sorted(missing)}"
    assert variables["PARLEY_ENV"] == "production"
    assert ipaddress.ip_address(variables["HOST"]).is_unspecified


def as_an_operator_would_set_it(value: str) -> str:
    """``value`` with each required ``${NAME:?…}`` filled in as an operator plausibly would."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "SMTP_URL":
            return "smtp+starttls://parley:operator-chosen@mail.example.org:587"
        if name.endswith(("_URL", "ISSUER")):
            return "https://chat.example.org"
        return "operator-chosen-" + "x" * 48

    return re.sub(r"\$\{(\w+):\?[^}]*\}", fill, with_defaults(value))


@pytest.mark.parametrize("spec", SERVICES, ids=[spec.name for spec in SERVICES])
def test_each_service_starts_in_production_with_its_compose_environment(
    spec: ServiceSpec,
) -> None:
    """The services' own settings loaders are the judge of what they need: if one gains a
    required variable that compose does not set, this fails."""
    environ = {name: as_an_operator_would_set_it(v) for name, v in environment(spec.name).items()}
    settings = spec.load_settings(environ)
    assert settings.is_production


@pytest.mark.parametrize("service", sorted(compose()["services"]))
def test_secrets_come_from_the_environment_and_are_required(service: str) -> None:
    for name, value in environment(service).items():
        if name in SECRETS or re.search(r"SECRET|PASSWORD", name):
            assert re.fullmatch(rf"\$\{{{name}:\?[^}}]*\}}", value), (
                f"{service}: {name} must be ${{{name}:?message}}, not a literal or a default"
            )
        if "://" in value:
            assert urlsplit(with_defaults(value)).password is None, f"{service}: {name}"


@pytest.mark.parametrize(("service", "port"), sorted(DEFAULT_PORTS.items()))
def test_each_service_listens_on_its_default_port(service: str, port: int) -> None:
    definition = services()[service]
    assert environment(service)["PORT"] == str(port)
    assert container_ports(definition)
    assert set(container_ports(definition)) == {port}
    assert bool(definition.get("ports")) == (service in PUBLISHED)


@pytest.mark.parametrize("service", sorted(REQUIRED_ENVIRONMENT))
def test_service_urls_name_the_service_and_its_port(service: str) -> None:
    for name, value in environment(service).items():
        if name in SERVICE_URLS:
            url = urlsplit(with_defaults(value))
            target = SERVICE_URLS[name]
            assert target in services()
            assert (url.scheme, url.hostname, url.port) == ("http", target, DEFAULT_PORTS[target])


@pytest.mark.parametrize("service", [*DATABASE_USERS, "migrate"])
def test_database_url_points_at_yugabytedb_ysql(service: str) -> None:
    url = urlsplit(with_defaults(environment(service)["DATABASE_URL"]))
    assert url.scheme == "postgresql"
    assert (url.hostname, url.port) == ("yugabytedb", YSQL_PORT)
    # The role and database are the ones yugabyte/create_database.sql creates.
    script = (ROOT / "yugabyte" / "create_database.sql").read_text()
    assert f"CREATE ROLE {url.username} LOGIN" in script
    assert f"CREATE DATABASE {url.path.lstrip('/')} WITH OWNER = {url.username}" in script


def test_yugabytedb_runs_a_pinned_official_image_in_the_foreground() -> None:
    yugabytedb = services()["yugabytedb"]
    repository, _, tag = yugabytedb["image"].partition(":")
    assert repository == "yugabytedb/yugabyte"
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+-b\d+", tag), "pin a release tag, not latest"
    assert yugabytedb["command"][:3] == ["bin/yugabyted", "start", "--background=false"]


def test_yugabytedb_runs_with_the_recommended_tserver_flags() -> None:
    lines = (ROOT / "yugabyte" / "tserver.flags").read_text().splitlines()
    recommended = dict(
        line.removeprefix("--").split("=", 1) for line in lines if line.startswith("--")
    )
    passed = next(
        part.removeprefix("--tserver_flags=")
        for part in services()["yugabytedb"]["command"]
        if part.startswith("--tserver_flags=")
    )
    assert recommended
    assert dict(pair.split("=", 1) for pair in passed.split(",")) == recommended


def test_stateful_services_keep_their_data_in_named_volumes() -> None:
    for service in ("yugabytedb", "redis"):
        volume = services()[service]["volumes"][0].split(":")[0]
        assert volume in compose()["volumes"], f"{service} data would die with its container"


def test_dockerfile_builds_from_the_lockfile_in_a_separate_stage() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    syncs = [args for keyword, args in dockerfile() if keyword == "RUN" and "uv sync" in args]
    assert syncs
    for command in syncs:
        assert "--frozen" in command.split(), "uv sync must install exactly what uv.lock says"
        assert "--no-dev" in command.split()
    assert not any("uv sync" in args for _, args in stages[-1]), "build tools stay in the builder"


def test_final_stage_runs_parley_as_a_numeric_non_root_user() -> None:
    final = dockerfile_stages()[-1]
    users = [arguments for keyword, arguments in final if keyword == "USER"]
    assert users, "the final stage must set USER"
    user = users[-1].split(":")[0]
    assert user.isdigit()
    assert int(user) != 0
    assert json.loads(dict(final)["ENTRYPOINT"]) == ["parley"]
    exposed = {int(port.split("/")[0]) for port in dict(final)["EXPOSE"].split()}
    assert set(DEFAULT_PORTS.values()) <= exposed


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_image() -> None:
    patterns = dockerignore_patterns()
    assert {".env", ".venv", ".data", ".git", "tests", "bench"} <= set(patterns)
    needed = ["pyproject.toml", "uv.lock", "README.md", "yugabyte", "parley", "servicekit"]
    needed += [spec.package for spec in SERVICES]
    for name in needed:
        excluding = [pattern for pattern in patterns if fnmatch.fnmatch(name, pattern)]
        assert not excluding, f"{name} is needed in the image but {excluding} excludes it"


def test_parley_starts_without_the_packages_the_image_leaves_out() -> None:
    left_out = packages_left_out_of_image()
    if not left_out:
        pytest.skip("the image installs every dependency")
    modules = ["parley.cli"]
    for spec in SERVICES:
        modules += [
            name
            for name in (f"{spec.package}.settings", f"{spec.package}.app")
            if importlib.util.find_spec(name) is not None
        ]
    blocked = [name.replace("-", "_") for name in left_out]
    # A module set to None in sys.modules cannot be imported, as if it were not installed.
    program = (
        "import importlib, sys\n"
        f"sys.modules.update(dict.fromkeys({blocked!r}))\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def run_migrate_script(database_url: str, tmp_path: Path, wait_seconds: int) -> tuple[int, str]:
    """Run yugabyte/migrate.sh with a stand-in ``parley``; returns (exit code, stderr)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in = bin_dir / "parley"
    stand_in.write_text('#!/bin/sh\nprintf "%s" "$*" > "$PARLEY_CALLED_WITH"\n')
    stand_in.chmod(0o755)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "MIGRATE_WAIT_SECONDS": str(wait_seconds),
        "PARLEY_CALLED_WITH": str(tmp_path / "called"),
        # `python` must be the one with psycopg, as it is on the image's PATH.
        "PATH": os.pathsep.join(
            [str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]]
        ),
    }
    result = subprocess.run(
        ["sh", str(ROOT / "yugabyte" / "migrate.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=wait_seconds + 60,
    )
    return result.returncode, result.stderr


def test_migrate_script_runs_parley_migrate_once_the_database_answers(
    tmp_path: Path, storage_servers: StorageServers
) -> None:
    exit_code, stderr = run_migrate_script(storage_servers.postgres_url, tmp_path, wait_seconds=30)
    assert exit_code == 0, stderr
    assert (tmp_path / "called").read_text() == "migrate"


def test_migrate_script_gives_up_when_the_database_never_answers(tmp_path: Path) -> None:
    closed = f"postgresql://parley@127.0.0.1:{free_port()}/parley"
    exit_code, stderr = run_migrate_script(closed, tmp_path, wait_seconds=1)
    assert exit_code != 0
    assert "database not reachable" in stderr
    assert not (tmp_path / "called").exists()
