"""`parley dev` as a developer runs it: a real process tree, real servers, real signals."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from parley.dev import service_ports
from parley.embedded import free_port, port_is_open
from tests.support.database import (
    SERVICE_SCHEMAS,
    StorageServers,
    database_url_for,
    drop_test_database,
)

REPOSITORY = Path(__file__).resolve().parents[2]
READY_BANNER = "Parley is ready: open "
BANNER_LAST_LINE = "Ctrl-C stops everything."
START_TIMEOUT_SECONDS = 90.0
RESTART_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 20.0
# Variables that would point `parley dev` somewhere other than where each test says.
CONFIGURATION_VARIABLES = (
    "DATABASE_URL",
    "REDIS_URL",
    "OIDC_ISSUER",
    "PUBLIC_URL",
    "PORT",
    "IDENTITY_URL",
    "CONVERSATIONS_URL",
    "MESSAGES_URL",
    "REALTIME_URL",
)

pytestmark = pytest.mark.slow


def free_port_block(size: int) -> int:
    """The first of ``size`` consecutive loopback ports that nothing uses right now."""
    for _ in range(200):
        first = free_port()
        if first + size > 65535:
            continue
        probes = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(size)]
        try:
            for offset, probe in enumerate(probes):
                probe.bind(("127.0.0.1", first + offset))
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
        return first
    raise RuntimeError(f"no block of {size} free ports found")


def process_has_exited(pid: int) -> bool:
    """True when ``pid`` no longer runs (gone, or a zombie waiting for its parent to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


class DevStack:
    """`parley dev` running as a subprocess, its output collected line by line."""

    def __init__(self, arguments: list[str], environment: dict[str, str]) -> None:
        self.lines: list[str] = []
        self._new_line = threading.Condition()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "parley", "dev", *arguments],
            cwd=REPOSITORY,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        threading.Thread(target=self._collect_output, daemon=True).start()

    def _collect_output(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._new_line:
                self.lines.append(line.rstrip("\n"))
                self._new_line.notify_all()

    def wait_for(self, pattern: str, timeout: float, after: int = 0) -> tuple[int, re.Match[str]]:
        """The index and match of the first line after line ``after`` that matches ``pattern``."""
        compiled = re.compile(pattern)
        deadline = time.monotonic() + timeout
        checked = after
        with self._new_line:
            while True:
                for index in range(checked, len(self.lines)):
                    match = compiled.search(self.lines[index])
                    if match:
                        return index, match
                checked = len(self.lines)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.process.poll() is not None:
                    tail = "\n".join(self.lines[-60:])
                    pytest.fail(
                        f"no line matched {pattern!r} in {timeout:g} s; output ends:\n{tail}"
                    )
                self._new_line.wait(min(remaining, 0.5))

    def service_pids(self) -> dict[str, int]:
        """Each service's most recently started process, as the supervisor announced it."""
        announced = (re.search(r"\| (\w+): starting \(pid (\d+)", line) for line in self.lines)
        return {match[1]: int(match[2]) for match in announced if match}

    def interrupt_and_wait(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=STOP_TIMEOUT_SECONDS)

    def kill_everything(self, pids: list[int]) -> None:
        """After a failed test: leave no process behind, whatever state the stack is in."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pid in pids:
            # Services and embedded servers each lead their own process group.
            if not process_has_exited(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)


def development_environment(**overrides: str) -> dict[str, str]:
    environment = {
        name: value for name, value in os.environ.items() if name not in CONFIGURATION_VARIABLES
    }
    # Keys of this test only, so a shared Redis is never confused with another run's.
    environment["REDIS_NAMESPACE"] = f"parley-dev-test-{uuid.uuid4().hex[:8]}"
    return environment | overrides


def assert_every_service_answers(ports: dict[str, int]) -> None:
    with httpx.Client(timeout=5, trust_env=False) as client:
        for name, port in ports.items():
            for probe in ("/healthz", "/readyz"):
                response = client.get(f"http://127.0.0.1:{port}{probe}")
                assert response.status_code == 200, (name, probe, response.text)


@pytest.fixture
def stacks() -> Iterator[list[tuple[DevStack, list[int]]]]:
    """Stacks a test started, with the pids it learnt; whatever survives the test is killed."""
    started: list[tuple[DevStack, list[int]]] = []
    yield started
    for stack, pids in started:
        stack.kill_everything([*pids, *stack.service_pids().values()])


def test_dev_starts_embedded_storage_restarts_a_dead_service_and_stops_cleanly(
    tmp_path: Path, stacks: list[tuple[DevStack, list[int]]]
) -> None:
    base_port, postgres_port, redis_port = free_port_block(5), free_port(), free_port()
    ports = service_ports(base_port)
    data_dir = tmp_path / "data"
    started_at = time.monotonic()
    stack = DevStack(
        [
            *("--data-dir", str(data_dir), "--base-port", str(base_port)),
            *("--postgres-port", str(postgres_port), "--redis-port", str(redis_port)),
        ],
        development_environment(),
    )
    embedded_pids: list[int] = []
    stacks.append((stack, embedded_pids))

    _, postgres = stack.wait_for(r"embedded PostgreSQL is up \(pid (\d+)", START_TIMEOUT_SECONDS)
    embedded_pids.append(int(postgres[1]))
    _, redis_server = stack.wait_for(r"embedded Redis is up \(pid (\d+)", START_TIMEOUT_SECONDS)
    embedded_pids.append(int(redis_server[1]))
    banner_line, banner = stack.wait_for(re.escape(READY_BANNER) + r"(\S+)", START_TIMEOUT_SECONDS)
    print(f"ready after {time.monotonic() - started_at:.1f} s")
    stack.wait_for(re.escape(BANNER_LAST_LINE), 5, after=banner_line)

    assert banner[1] == f"http://127.0.0.1:{base_port}"
    output = "\n".join(stack.lines)
    assert f"starting an embedded one on port {postgres_port}" in output
    assert f"starting an embedded one on port {redis_port}" in output
    assert f"postgresql://postgres@127.0.0.1:{postgres_port}/postgres (embedded" in output
    assert (data_dir / "postgresql" / "cluster" / "PG_VERSION").exists()
    assert_every_service_answers(ports)

    victim = "messages_service"
    victim_pid = stack.service_pids()[victim]
    os.kill(victim_pid, signal.SIGKILL)
    died_line, _ = stack.wait_for(
        rf"{victim} DIED \(killed by SIGKILL\)", RESTART_TIMEOUT_SECONDS, after=banner_line
    )
    stack.wait_for(r"its last \d+ lines of output", 1.0, after=died_line)
    restarted_line, restarted = stack.wait_for(
        rf"\| {victim}: starting \(pid (\d+)", RESTART_TIMEOUT_SECONDS, after=died_line
    )
    assert int(restarted[1]) != victim_pid
    stack.wait_for(rf"\| {victim}: ready", RESTART_TIMEOUT_SECONDS, after=restarted_line)
    stack.wait_for(re.escape(READY_BANNER), RESTART_TIMEOUT_SECONDS, after=restarted_line)
    assert_every_service_answers(ports)

    service_pids = list(stack.service_pids().values())
    stopping_at = time.monotonic()
    assert stack.interrupt_and_wait() == 0
    print(f"stopped after {time.monotonic() - stopping_at:.1f} s")

    for port in [*ports.values(), postgres_port, redis_port]:
        assert not port_is_open("127.0.0.1", port), port
    for pid in [*service_pids, *embedded_pids]:
        assert process_has_exited(pid), pid
    # PostgreSQL removes its pid file only after a clean shutdown.
    assert not (data_dir / "postgresql" / "cluster" / "postmaster.pid").exists()


def test_dev_uses_database_url_and_redis_url_without_starting_embedded_servers(
    tmp_path: Path,
    storage_servers: StorageServers,
    stacks: list[tuple[DevStack, list[int]]],
) -> None:
    database = f"parley_dev_test_{uuid.uuid4().hex[:10]}"
    server_url = (
        make_url(storage_servers.postgres_url)
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    database_url = database_url_for(server_url, database)
    data_dir = tmp_path / "data"
    base_port = free_port_block(5)
    try:
        # Nothing answers on these "local default" ports: only the variables can be used.
        stack = DevStack(
            [
                *("--data-dir", str(data_dir), "--base-port", str(base_port)),
                *("--postgres-port", str(free_port()), "--redis-port", str(free_port())),
            ],
            development_environment(DATABASE_URL=database_url, REDIS_URL=storage_servers.redis_url),
        )
        stacks.append((stack, []))
        banner_line, _ = stack.wait_for(re.escape(READY_BANNER), START_TIMEOUT_SECONDS)
        # The banner names both stores on the lines after it, which may still be arriving.
        stack.wait_for(re.escape(BANNER_LAST_LINE), 5, after=banner_line)
        output = "\n".join(stack.lines)
        assert "(from DATABASE_URL)" in output
        assert "(from REDIS_URL)" in output
        assert "starting an embedded one" not in output
        assert not data_dir.exists()
        assert_every_service_answers(service_ports(base_port))
        with psycopg.connect(database_url) as connection:
            schemas = {
                row[0]
                for row in connection.execute("SELECT schema_name FROM information_schema.schemata")
            }
        assert set(SERVICE_SCHEMAS) <= schemas
        assert stack.interrupt_and_wait() == 0
    finally:
        drop_test_database(server_url, database)
