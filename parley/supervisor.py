"""Keeps a set of service processes running and says, loudly, what each one is doing.

Each service runs as its own child process in its own process group, so Ctrl-C in the terminal
reaches only the supervisor, which then stops the services in an orderly way. The supervisor
relays every line a service prints, prefixed with the service's name, and prints a service's
state whenever it changes::

    starting → running, not ready → ready → died → (restart with backoff) … → failed | stopped

A service that dies is reported with its exit code and its last lines of output and restarted
after a growing delay; after ``MAX_RESTARTS`` deaths in a row it stays down, reported as failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import httpx

MAX_RESTARTS: Final = 5
FIRST_BACKOFF_SECONDS: Final = 1.0  # doubled after every death in a row: 1, 2, 4, 8, 16 s
STABLE_SECONDS: Final = 60.0  # a process that lived this long starts a fresh count of deaths
# Seconds between probes: often until a service is ready, so start-up feels quick; then seldom,
# because every probe is a request the service logs, and a death is noticed without probing.
STARTING_POLL_SECONDS: Final = 0.5
READY_POLL_SECONDS: Final = 5.0
PROBE_TIMEOUT_SECONDS: Final = 2.0  # /readyz itself gives up on a dependency after 1 s
STOP_TIMEOUT_SECONDS: Final = 10.0  # SIGTERM, then SIGKILL after this long
START_AFTER_TIMEOUT_SECONDS: Final = 30.0  # how long a service waits for its ``start_after``
RECENT_LINES: Final = 20  # output lines kept per service for the report of its death
OUTPUT_LINE_LIMIT_BYTES: Final = 1 << 20  # one log line (a traceback is many lines)

_COLOURS: Final = ("36", "33", "35", "32", "34", "91")  # ANSI foreground colours, per service


class ServiceState(enum.Enum):
    STARTING = "starting"
    NOT_READY = "running, not ready"
    READY = "ready"
    NOT_ANSWERING = "running, not answering HTTP"
    RESTARTING = "waiting to restart"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass
class ManagedService:
    """One service process the supervisor keeps running."""

    name: str
    port: int
    command: Sequence[str]
    environment: Mapping[str, str]
    state: ServiceState = ServiceState.STARTING
    recent_output: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT_LINES))
    # A service this one needs at start-up: it starts once that one answers HTTP (or gives up).
    start_after: ManagedService | None = None
    answered: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Console:
    """Where the supervisor's own lines and the services' output go, each prefixed by its source."""

    def __init__(self, names: Sequence[str]) -> None:
        self._width = max(len(name) for name in [*names, "parley dev"])
        colour = sys.stdout.isatty() and "NO_COLOR" not in os.environ
        self._colours = {
            name: _COLOURS[index % len(_COLOURS)] if colour else ""
            for index, name in enumerate(names)
        }

    def say(self, text: str) -> None:
        self.relay("parley dev", text)

    def relay(self, source: str, line: str) -> None:
        prefix = f"{source:<{self._width}} |"
        colour = self._colours.get(source, "")
        if colour:
            prefix = f"\033[{colour}m{prefix}\033[0m"
        print(f"{prefix} {line}", flush=True)


def describe_exit(exit_code: int) -> str:
    """``exit code 1`` or ``killed by SIGKILL``: how a process ended, for people."""
    if exit_code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-exit_code).name}"
    return f"exit code {exit_code}"


class Supervisor:
    """Runs ``services`` until ``request_stop``, each once its ``start_after`` answers."""

    def __init__(
        self,
        services: Sequence[ManagedService],
        console: Console,
        on_all_ready: Callable[[], None],
    ) -> None:
        self.services = list(services)
        self._console = console
        self._on_all_ready = on_all_ready
        self._all_ready = False
        self._stop = asyncio.Event()

    def request_stop(self) -> None:
        if not self._stop.is_set():
            self._console.say("stopping every service…")
            self._stop.set()

    async def run(self) -> None:
        """Start every service and keep it running until ``request_stop``; then stop them all."""
        # trust_env=False: an HTTP proxy from the environment must not see loopback probes.
        async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_SECONDS, trust_env=False) as client:
            await asyncio.gather(*(self._keep_running(each, client) for each in self.services))

    def _set_state(self, service: ManagedService, state: ServiceState, detail: str = "") -> None:
        if service.state is state and not detail:
            return
        service.state = state
        self._console.say(f"{service.name}: {state.value}{f' ({detail})' if detail else ''}")
        all_ready = all(each.state is ServiceState.READY for each in self.services)
        if all_ready and not self._all_ready:
            self._on_all_ready()
        self._all_ready = all_ready

    async def _wait_unless_stopped(
        self, seconds: float, until: asyncio.Event | None = None
    ) -> None:
        """Wait ``seconds``, or less if a stop is requested or ``until`` is set."""
        events = [self._stop] if until is None else [self._stop, until]
        waits = [asyncio.create_task(event.wait()) for event in events]
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for wait in waits:
            wait.cancel()

    async def _keep_running(self, service: ManagedService, client: httpx.AsyncClient) -> None:
        if service.start_after is not None:
            await self._wait_unless_stopped(
                START_AFTER_TIMEOUT_SECONDS, until=service.start_after.answered
            )
        deaths_in_a_row = 0
        while not self._stop.is_set():
            started_at = time.monotonic()
            exit_code = await self._run_once(service, client)
            if self._stop.is_set():
                # uvicorn ends by re-raising SIGTERM after a graceful shutdown: nothing to report.
                stopped_as_asked = exit_code in (0, -signal.SIGTERM)
                detail = "" if stopped_as_asked else describe_exit(exit_code)
                self._set_state(service, ServiceState.STOPPED, detail)
                return
            if time.monotonic() - started_at >= STABLE_SECONDS:
                deaths_in_a_row = 0
            deaths_in_a_row += 1
            self._report_death(service, exit_code)
            if deaths_in_a_row > MAX_RESTARTS:
                self._set_state(
                    service,
                    ServiceState.FAILED,
                    f"died {deaths_in_a_row} times in a row; "
                    "not restarting it — fix the cause and restart `parley dev`",
                )
                service.answered.set()
                return
            backoff = FIRST_BACKOFF_SECONDS * 2 ** (deaths_in_a_row - 1)
            self._set_state(
                service,
                ServiceState.RESTARTING,
                f"in {backoff:g} s, restart {deaths_in_a_row} of {MAX_RESTARTS}",
            )
            await self._wait_unless_stopped(backoff)
        self._set_state(service, ServiceState.STOPPED)

    def _report_death(self, service: ManagedService, exit_code: int) -> None:
        banner = "!" * 3
        self._console.say(f"{banner} {service.name} DIED ({describe_exit(exit_code)}) {banner}")
        if service.recent_output:
            self._console.say(f"{banner} its last {len(service.recent_output)} lines of output:")
            for line in service.recent_output:
                self._console.say(f"{banner}   {line}")

    async def _run_once(self, service: ManagedService, client: httpx.AsyncClient) -> int:
        """Start the service's process, watch it until it exits or a stop is requested."""
        process = await asyncio.create_subprocess_exec(
            *service.command,
            env=dict(service.environment),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            limit=OUTPUT_LINE_LIMIT_BYTES,
        )
        service.recent_output.clear()
        self._set_state(service, ServiceState.STARTING, f"pid {process.pid}, port {service.port}")
        relay = asyncio.create_task(self._relay_output(service, process))
        probe = asyncio.create_task(self._probe_until_cancelled(service, client))
        exited = asyncio.create_task(process.wait())
        stopping = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait([exited, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Also when this task is cancelled: a service must never outlive its supervisor.
            probe.cancel()
            stopping.cancel()
            if not exited.done():
                await _terminate(process)
        # The pipe closes when the process group is gone; the timeout guards against a stray
        # grandchild that escaped the group and still holds it open.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(relay, timeout=2.0)
        return await exited

    async def _relay_output(
        self, service: ManagedService, process: asyncio.subprocess.Process
    ) -> None:
        assert process.stdout is not None
        while True:
            try:
                raw = await process.stdout.readline()
            except ValueError:  # the stream has already dropped the over-long line
                raw = f"[{OUTPUT_LINE_LIMIT_BYTES} bytes without a line break, left out]\n".encode()
            if not raw:
                return
            line = raw.decode(errors="replace").rstrip("\r\n")
            service.recent_output.append(line)
            self._console.relay(service.name, line)

    async def _probe_until_cancelled(
        self, service: ManagedService, client: httpx.AsyncClient
    ) -> None:
        """Keep the service's state in step with what /readyz and /healthz answer."""
        answered = False
        while True:
            if await _answers_ok(client, f"{service.base_url}/readyz"):
                state = ServiceState.READY
            elif await _answers_ok(client, f"{service.base_url}/healthz"):
                state = ServiceState.NOT_READY
            else:
                state = ServiceState.NOT_ANSWERING if answered else ServiceState.STARTING
            if state is not ServiceState.STARTING and state is not ServiceState.NOT_ANSWERING:
                answered = True
                service.answered.set()
            self._set_state(service, state)
            ready = state is ServiceState.READY
            await asyncio.sleep(READY_POLL_SECONDS if ready else STARTING_POLL_SECONDS)


async def _answers_ok(client: httpx.AsyncClient, url: str) -> bool:
    try:
        response = await client.get(url)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


async def _terminate(process: asyncio.subprocess.Process) -> None:
    """SIGTERM the process's group; SIGKILL it if it has not exited in ``STOP_TIMEOUT_SECONDS``."""
    _signal_group(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT_SECONDS)
    except TimeoutError:
        _signal_group(process.pid, signal.SIGKILL)
        await process.wait()


def _signal_group(pid: int, signal_number: int) -> None:
    # The group may already be gone: the process exited between the check and the signal.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal_number)
