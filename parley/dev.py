"""``parley dev``: the whole system on one machine, in one terminal — what ``make run`` runs.

1. Find PostgreSQL and Redis: ``DATABASE_URL`` / ``REDIS_URL`` when set (they must answer);
   else a server on the local default port; else start an embedded one under the data directory.
2. Migrate every service's schema; seed the embedded provider's demo accounts and clients
   (``parley.seed``), whose credentials the ready banner prints.
3. Run every service as its own process under a ``Supervisor`` (see ``parley.supervisor``), and
   print the URL to open once all of them are ready.
4. On Ctrl-C or SIGTERM stop everything this started: the services first, then the embedded
   servers they were using.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from identity_service.service import InvalidDetails
from parley.embedded import (
    EmbeddedPostgres,
    EmbeddedRedis,
    EmbeddedServerError,
    free_port,
    port_is_open,
)
from parley.migrate import migrate_all
from parley.seed import seed_development_data
from parley.services import SERVICES
from parley.storage import postgres_problem, redis_problem
from parley.supervisor import Console, ManagedService, ServiceState, Supervisor
from servicekit.settings import DEFAULT_PORTS, SettingsError

DEFAULT_BASE_PORT: Final = DEFAULT_PORTS["bff"]
DEFAULT_POSTGRES_PORT: Final = 5432
DEFAULT_REDIS_PORT: Final = 6379
CONFIGURED_ANSWER_SECONDS: Final = 5.0  # DATABASE_URL / REDIS_URL may be a server still starting
LOCAL_ANSWER_SECONDS: Final = 2.0  # a local default server either answers at once or is absent
RETRY_SECONDS: Final = 0.5

EmbeddedServer = EmbeddedPostgres | EmbeddedRedis


class DevelopmentStackError(Exception):
    """Something the developer has to fix before ``parley dev`` can run; the message says what."""


@dataclass(frozen=True)
class _StoreKind:
    """What differs between finding PostgreSQL and finding Redis."""

    label: str
    variable: str
    local_url: Callable[[int], str]
    problem: Callable[[str, float], str | None]
    embedded: Callable[[Path, int], EmbeddedServer]
    directory: str


POSTGRESQL: Final = _StoreKind(
    "PostgreSQL",
    "DATABASE_URL",
    lambda port: f"postgresql://postgres@127.0.0.1:{port}/postgres",
    postgres_problem,
    EmbeddedPostgres,
    "postgresql",
)
REDIS: Final = _StoreKind(
    "Redis",
    "REDIS_URL",
    lambda port: f"redis://127.0.0.1:{port}/0",
    redis_problem,
    EmbeddedRedis,
    "redis",
)


@dataclass(frozen=True)
class Store:
    label: str
    url: str
    origin: str  # where it came from, for people: "from DATABASE_URL", "embedded, data in …"


def display_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user_info, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user_info.partition(':')[0]}:***@{host}"))


def _find_store(
    kind: _StoreKind, port: int, data_dir: Path, started: list[EmbeddedServer], console: Console
) -> Store:
    configured = os.environ.get(kind.variable, "").strip()
    if configured:
        deadline = time.monotonic() + CONFIGURED_ANSWER_SECONDS
        while (problem := kind.problem(configured, LOCAL_ANSWER_SECONDS)) is not None:
            if time.monotonic() >= deadline:
                raise DevelopmentStackError(
                    f"{kind.variable} is set, but {kind.label} at {display_url(configured)} "
                    f"did not answer within {CONFIGURED_ANSWER_SECONDS:g} s: {problem}"
                )
            time.sleep(RETRY_SECONDS)
        return Store(kind.label, configured, f"from {kind.variable}")

    local_url = kind.local_url(port)
    problem = kind.problem(local_url, LOCAL_ANSWER_SECONDS)
    if problem is None:
        return Store(kind.label, local_url, "local server")
    if port_is_open("127.0.0.1", port):
        console.say(f"{kind.label} on port {port} is not usable ({problem})")
        port = free_port()
    server = kind.embedded(data_dir / kind.directory, port)
    started.append(server)
    console.say(
        f"{kind.variable} is not set and no {kind.label} answers at {local_url}: "
        f"starting an embedded one on port {port} (data in {server.data_dir})"
    )
    try:
        url = server.start()
    except (EmbeddedServerError, subprocess.CalledProcessError) as error:
        raise DevelopmentStackError(f"the embedded {kind.label} did not start: {error}") from error
    assert server.process is not None
    console.say(f"embedded {kind.label} is up (pid {server.process.pid}, log {server.log_path})")
    return Store(kind.label, url, f"embedded, data in {server.data_dir}")


def service_ports(base_port: int) -> dict[str, int]:
    """Each service's port: the default ports of the brief, shifted to start at ``base_port``."""
    return {name: base_port + port - DEFAULT_BASE_PORT for name, port in DEFAULT_PORTS.items()}


def plan_services(
    ports: dict[str, int], database: Store, redis_store: Store
) -> list[ManagedService]:
    """The service processes to run, in start order, each with its environment."""
    urls = _service_urls(ports)
    # An external OpenID Provider replaces identity_service, which is then not started (BRIEF §5).
    external_issuer = os.environ.get("OIDC_ISSUER", "").strip()
    environment = dict(os.environ)
    for variable, default in {"PARLEY_ENV": "development", "LOG_FORMAT": "console"}.items():
        if not environment.get(variable, "").strip():
            environment[variable] = default
    environment |= {
        "DATABASE_URL": database.url,
        "REDIS_URL": redis_store.url,
        "PUBLIC_URL": urls["bff"],
        "OIDC_ISSUER": external_issuer or urls["identity_service"],
        "CONVERSATIONS_URL": urls["conversations_service"],
        "MESSAGES_URL": urls["messages_service"],
        "REALTIME_URL": urls["realtime_service"],
        # Output goes to a pipe, which Python would otherwise buffer: lines would arrive late.
        "PYTHONUNBUFFERED": "1",
    }
    if not external_issuer:  # the people directory, which only the embedded provider offers
        environment["IDENTITY_URL"] = urls["identity_service"]
    services = [
        ManagedService(
            name=spec.name,
            port=ports[spec.name],
            command=[sys.executable, "-m", "parley", "serve", spec.name],
            environment=environment | {"PORT": str(ports[spec.name])},
        )
        for spec in SERVICES
        if not (external_issuer and spec.name == "identity_service")
    ]
    # The others discover the identity provider when they start; once it answers they start
    # together, which on two cores halves the time to ready compared with one after another.
    identity = next((each for each in services if each.name == "identity_service"), None)
    for service in services:
        if service is not identity:
            service.start_after = identity
    return services


def _service_urls(ports: dict[str, int]) -> dict[str, str]:
    return {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}


def _seed_demo_data(database: Store, services: list[ManagedService], console: Console) -> list[str]:
    """Seed the embedded provider's demo people and clients; the banner's lines about them."""
    bff = next(service for service in services if service.name == "bff")
    embedded_provider = any(service.name == "identity_service" for service in services)
    if not embedded_provider or bff.environment.get("PARLEY_ENV") != "development":
        return []
    console.say("seeding demo accounts and clients")
    try:
        return seed_development_data(database.url, bff.environment).banner_lines()
    except (InvalidDetails, SettingsError) as error:
        raise DevelopmentStackError(f"the demo data cannot be seeded: {error}") from error


def _announce_ready(
    console: Console, public_url: str, stores: list[Store], demo_lines: list[str]
) -> None:
    rule = "=" * 72
    console.say(rule)
    console.say(f"Parley is ready: open {public_url}")
    for store in stores:
        console.say(f"  {store.label:<11} {display_url(store.url)} ({store.origin})")
    for line in demo_lines:
        console.say(line)
    console.say("  Ctrl-C stops everything.")
    console.say(rule)


async def _supervise(supervisor: Supervisor) -> None:
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, supervisor.request_stop)
    await supervisor.run()


def _interrupt(signal_number: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_development_stack(
    data_dir: str | Path = ".data",
    *,
    base_port: int = DEFAULT_BASE_PORT,
    postgres_port: int = DEFAULT_POSTGRES_PORT,
    redis_port: int = DEFAULT_REDIS_PORT,
) -> int:
    """Run everything until Ctrl-C or SIGTERM; 0 after a clean stop, 1 if it could not start."""
    console = Console([spec.name for spec in SERVICES])
    started: list[EmbeddedServer] = []
    ports = service_ports(base_port)
    # Until the supervisor's event loop takes the signals over, SIGTERM interrupts like Ctrl-C,
    # so the embedded servers started so far are stopped as well.
    previous_sigterm = signal.signal(signal.SIGTERM, _interrupt)
    try:
        busy = [
            f"{port} ({name})" for name, port in ports.items() if port_is_open("127.0.0.1", port)
        ]
        if busy:
            raise DevelopmentStackError(
                f"already in use: {', '.join(busy)}. Is another `parley dev` running? "
                "--base-port moves every service."
            )
        database = _find_store(POSTGRESQL, postgres_port, Path(data_dir), started, console)
        redis_store = _find_store(REDIS, redis_port, Path(data_dir), started, console)
        console.say(f"migrating {display_url(database.url)}")
        migrate_all(database.url)
        services = plan_services(ports, database, redis_store)
        demo_lines = _seed_demo_data(database, services, console)
        public_url = _service_urls(ports)["bff"]
        supervisor = Supervisor(
            services,
            console,
            lambda: _announce_ready(console, public_url, [database, redis_store], demo_lines),
        )
        asyncio.run(_supervise(supervisor))
        if all(service.state is ServiceState.FAILED for service in services):
            console.say("every service has failed; nothing left to run")
            return 1
    except KeyboardInterrupt:
        console.say("interrupted")
    except DevelopmentStackError as error:
        console.say(f"cannot start: {error}")
        return 1
    finally:
        _stop_embedded_servers(started, console)
        signal.signal(signal.SIGTERM, previous_sigterm)
    console.say("stopped")
    return 0


def _stop_embedded_servers(started: list[EmbeddedServer], console: Console) -> None:
    # A second Ctrl-C must not leave a server running with nobody to stop it.
    previous_sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        for server in reversed(started):
            if server.running:
                console.say(f"stopping the embedded {server.name}")
            server.stop()
    finally:
        signal.signal(signal.SIGINT, previous_sigint)
