"""The resilient upstream client: retries only when safe, a deadline, a breaker, the request id."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import formatdate
from pathlib import Path

import httpx
import pytest
import respx

from servicekit.errors import UpstreamUnavailable
from servicekit.http import (
    BreakerState,
    CircuitBreaker,
    RetryPolicy,
    Timeouts,
    UpstreamClient,
    parse_retry_after,
)
from servicekit.logging import bind_request_id, reset_request_id
from tests.support.servers import free_port

BASE_URL = "http://conversations.test"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Short enough that the whole file runs in seconds, long enough not to flake on a busy machine.
FAST_TIMEOUTS = Timeouts(connect=0.2, read=0.5, write=0.5, pool=0.2, total=2.0)
FAST_RETRY = RetryPolicy(attempts=3, backoff_initial=0.01, backoff_max=0.05, retry_after_max=1.0)
BREAKER_RESET_SECS = 10.0


class FakeClock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def mocked(
    router: respx.MockRouter,
    *,
    timeouts: Timeouts = FAST_TIMEOUTS,
    retry: RetryPolicy = FAST_RETRY,
    breaker: CircuitBreaker | None = None,
) -> UpstreamClient:
    """A client whose upstream is ``router``."""
    transport = httpx.MockTransport(router.async_handler)
    return UpstreamClient(
        "conversations",
        BASE_URL,
        timeouts=timeouts,
        retry=retry,
        breaker=breaker,
        transport=transport,
    )


@pytest.fixture
def router() -> respx.MockRouter:
    return respx.MockRouter(base_url=BASE_URL, assert_all_called=False)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=2, reset_timeout=BREAKER_RESET_SECS, clock=clock)


@pytest.fixture
async def client(
    router: respx.MockRouter, breaker: CircuitBreaker
) -> AsyncIterator[UpstreamClient]:
    async with contextlib.aclosing(mocked(router, breaker=breaker)) as upstream:
        yield upstream


def unavailable(retry_after: str | None = None) -> httpx.Response:
    return httpx.Response(503, headers={"Retry-After": retry_after} if retry_after else {})


async def test_get_is_retried_after_503_until_it_succeeds(router: respx.MockRouter) -> None:
    route = router.get("/members").mock(
        side_effect=[unavailable(), unavailable(), httpx.Response(200, json={"ok": True})]
    )

    async with contextlib.aclosing(mocked(router)) as c:
        response = await c.get("/members")

    assert response.json() == {"ok": True}
    assert route.call_count == 3


async def test_retry_after_seconds_from_the_upstream_is_waited_for(
    client: UpstreamClient, router: respx.MockRouter
) -> None:
    router.get("/members").mock(side_effect=[unavailable("1"), httpx.Response(200)])

    started = time.monotonic()
    response = await client.get("/members")

    assert response.status_code == 200
    assert time.monotonic() - started >= 1.0


async def test_retry_after_longer_than_the_cap_is_waited_for_only_up_to_the_cap(
    router: respx.MockRouter,
) -> None:
    router.get("/members").mock(side_effect=[unavailable("30"), httpx.Response(200)])
    capped = RetryPolicy(attempts=2, retry_after_max=0.2)

    async with contextlib.aclosing(mocked(router, retry=capped)) as c:
        started = time.monotonic()
        response = await c.get("/members")

    assert response.status_code == 200
    assert 0.2 <= time.monotonic() - started < 1.0


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    now = 1_700_000_000.0

    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(formatdate(now + 2, usegmt=True), now=now) == 2.0
    assert parse_retry_after(formatdate(now - 60, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


async def test_retry_after_beyond_the_deadline_gives_up_at_once_with_that_retry_after(
    router: respx.MockRouter,
) -> None:
    route = router.get("/members").mock(return_value=unavailable("30"))
    patient = RetryPolicy(attempts=3, retry_after_max=60)
    timeouts = Timeouts(total=2.0)

    async with contextlib.aclosing(mocked(router, timeouts=timeouts, retry=patient)) as c:
        started = time.monotonic()
        with pytest.raises(UpstreamUnavailable) as raised:
            await c.get("/members")

    assert time.monotonic() - started < 0.5
    assert route.call_count == 1
    assert raised.value.retry_after == 30
    assert raised.value.headers == {"Retry-After": "30"}


async def test_post_without_idempotency_key_is_not_retried(
    client: UpstreamClient, router: respx.MockRouter
) -> None:
    route = router.post("/messages").mock(side_effect=[unavailable(), httpx.Response(201)])

    with pytest.raises(UpstreamUnavailable):
        await client.post("/messages", json={"body": "hi"})

    assert route.call_count == 1


async def test_post_that_timed_out_after_sending_is_not_retried(
    client: UpstreamClient, router: respx.MockRouter
) -> None:
    route = router.post("/messages").mock(
        side_effect=[httpx.ReadTimeout("slow"), httpx.Response(201)]
    )

    with pytest.raises(UpstreamUnavailable):
        await client.post("/messages", json={"body": "hi"})

    assert route.call_count == 1


async def test_post_with_idempotency_key_is_retried(
    client: UpstreamClient, router: respx.MockRouter
) -> None:
    route = router.post("/messages").mock(side_effect=[unavailable(), httpx.Response(201)])

    response = await client.post(
        "/messages", json={"body": "hi"}, headers={"Idempotency-Key": "msg-1"}
    )

    assert response.status_code == 201
    assert route.call_count == 2
    assert all(call.request.headers["Idempotency-Key"] == "msg-1" for call in route.calls)
    assert route.calls[0].request.content == route.calls[1].request.content


async def test_post_is_retried_when_the_connection_was_never_made(
    client: UpstreamClient, router: respx.MockRouter
) -> None:
    route = router.post("/messages").mock(
        side_effect=[httpx.ConnectError("refused"), httpx.Response(201)]
    )

    response = await client.post("/messages", json={"body": "hi"})

    assert response.status_code == 201
    assert route.call_count == 2


async def test_client_errors_are_returned_without_retry_and_do_not_trip_the_breaker(
    client: UpstreamClient, router: respx.MockRouter, breaker: CircuitBreaker
) -> None:
    route = router.get("/members").mock(return_value=httpx.Response(404, json={"code": "x"}))

    responses = [await client.get("/members") for _ in range(4)]

    assert [response.status_code for response in responses] == [404] * 4
    assert route.call_count == 4
    assert breaker.state is BreakerState.CLOSED


async def test_exhausted_retries_raise_upstream_unavailable_with_retry_after(
    router: respx.MockRouter,
) -> None:
    route = router.get("/members").mock(return_value=unavailable())

    async with contextlib.aclosing(mocked(router)) as c:
        with pytest.raises(UpstreamUnavailable) as raised:
            await c.get("/members")

    assert route.call_count == FAST_RETRY.attempts
    assert raised.value.status == 503
    assert raised.value.headers == {"Retry-After": "1"}


async def test_total_deadline_bounds_a_slow_upstream(router: respx.MockRouter) -> None:
    async def answer_slowly(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200)

    router.get("/members").mock(side_effect=answer_slowly)
    timeouts = Timeouts(read=5.0, total=0.3)

    async with contextlib.aclosing(mocked(router, timeouts=timeouts)) as c:
        started = time.monotonic()
        with pytest.raises(UpstreamUnavailable):
            await c.get("/members")

    assert time.monotonic() - started < 0.6


async def test_total_deadline_bounds_retries(router: respx.MockRouter) -> None:
    router.get("/members").mock(return_value=unavailable())
    many_retries = RetryPolicy(attempts=1000, backoff_initial=0.05, backoff_max=0.05)
    timeouts = Timeouts(total=0.3)
    patient_breaker = CircuitBreaker(failure_threshold=1000)

    async with contextlib.aclosing(
        mocked(router, timeouts=timeouts, retry=many_retries, breaker=patient_breaker)
    ) as c:
        started = time.monotonic()
        with pytest.raises(UpstreamUnavailable):
            await c.get("/members")

    assert time.monotonic() - started < 0.6


async def test_request_id_of_the_current_request_is_forwarded(
    client: UpstreamClient, router: respx.MockRouter
) -> None:
    route = router.get("/members").mock(return_value=httpx.Response(200))

    token = bind_request_id("req-42")
    try:
        await client.get("/members")
    finally:
        reset_request_id(token)
    await client.get("/members")

    assert route.calls[0].request.headers["X-Request-ID"] == "req-42"
    assert "X-Request-ID" not in route.calls[1].request.headers


async def test_breaker_opens_after_consecutive_failures_and_then_rejects_without_calling(
    client: UpstreamClient, router: respx.MockRouter, breaker: CircuitBreaker
) -> None:
    route = router.get("/members").mock(return_value=unavailable())

    with pytest.raises(UpstreamUnavailable):
        await client.get("/members")
    assert route.call_count == 2  # the third attempt met the open breaker
    assert breaker.state is BreakerState.OPEN

    with pytest.raises(UpstreamUnavailable) as raised:
        await client.get("/members")

    assert route.call_count == 2
    assert raised.value.retry_after == BREAKER_RESET_SECS


async def test_breaker_lets_a_trial_through_after_the_reset_timeout_and_closes_on_success(
    client: UpstreamClient, router: respx.MockRouter, breaker: CircuitBreaker, clock: FakeClock
) -> None:
    router.get("/members").mock(side_effect=[unavailable(), unavailable(), httpx.Response(200)])
    with pytest.raises(UpstreamUnavailable):
        await client.get("/members")

    clock.advance(BREAKER_RESET_SECS)
    assert breaker.state is BreakerState.HALF_OPEN
    response = await client.get("/members")

    assert response.status_code == 200
    assert breaker.state is BreakerState.CLOSED


async def test_failed_trial_reopens_the_breaker_for_a_full_reset_timeout(
    client: UpstreamClient, router: respx.MockRouter, breaker: CircuitBreaker, clock: FakeClock
) -> None:
    route = router.get("/members").mock(return_value=httpx.Response(500))
    with pytest.raises(UpstreamUnavailable):
        await client.get("/members")
    with pytest.raises(UpstreamUnavailable):
        await client.get("/members")
    assert route.call_count == 2

    clock.advance(BREAKER_RESET_SECS)
    with pytest.raises(UpstreamUnavailable):
        await client.get("/members")

    assert route.call_count == 3
    assert breaker.state is BreakerState.OPEN
    assert breaker.seconds_until_trial() == BREAKER_RESET_SECS


def test_half_open_breaker_admits_one_trial_at_a_time(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    breaker.record_failure()
    breaker.record_failure()
    assert not breaker.try_acquire()

    clock.advance(BREAKER_RESET_SECS)

    assert breaker.try_acquire()
    assert not breaker.try_acquire()


def test_a_success_resets_the_count_of_consecutive_failures(breaker: CircuitBreaker) -> None:
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()

    assert breaker.state is BreakerState.CLOSED


# Against a real upstream process.

StartUpstream = Callable[[int, int], Awaitable[asyncio.subprocess.Process]]


@pytest.fixture
async def start_upstream() -> AsyncIterator[StartUpstream]:
    """Starts the flaky upstream as a separate uvicorn process; kills what is left at the end."""
    processes: list[asyncio.subprocess.Process] = []

    async def start(port: int, failures: int) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "tests.servicekit.flaky_upstream:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            cwd=PROJECT_ROOT,
            env={**os.environ, "FLAKY_FAILURES": str(failures)},
        )
        processes.append(process)
        await _wait_until_listening(process, port)
        return process

    yield start
    for process in processes:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_client_rides_out_an_upstream_process_that_answers_503_at_first(
    start_upstream: StartUpstream,
) -> None:
    port = free_port()
    await start_upstream(port, 2)
    patient = RetryPolicy(attempts=4, backoff_initial=0.01, backoff_max=0.05)

    async with contextlib.aclosing(
        UpstreamClient("flaky", f"http://127.0.0.1:{port}", retry=patient)
    ) as c:
        token = bind_request_id("req-flaky")
        try:
            response = await c.get("/resource")
        finally:
            reset_request_id(token)

    assert response.status_code == 200
    assert response.json() == {"requests_seen": 3, "request_id": "req-flaky"}


async def test_breaker_fails_fast_while_the_upstream_is_down_and_recovers_after_restart(
    start_upstream: StartUpstream,
) -> None:
    port = free_port()
    upstream = await start_upstream(port, 0)
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout=0.5)
    client = UpstreamClient(
        "flaky",
        f"http://127.0.0.1:{port}",
        timeouts=FAST_TIMEOUTS,
        retry=FAST_RETRY,
        breaker=breaker,
    )
    async with contextlib.aclosing(client):
        assert (await client.get("/resource")).status_code == 200

        upstream.kill()
        await upstream.wait()
        with pytest.raises(UpstreamUnavailable):
            await client.get("/resource")
        assert breaker.state is BreakerState.OPEN

        started = time.monotonic()
        with pytest.raises(UpstreamUnavailable) as raised:
            await client.get("/resource")
        assert time.monotonic() - started < 0.05
        assert raised.value.retry_after == 1

        await start_upstream(port, 0)
        await asyncio.sleep(breaker.seconds_until_trial())
        response = await client.get("/resource")

    assert response.json()["requests_seen"] == 1
    assert breaker.state is BreakerState.CLOSED


async def _wait_until_listening(process: asyncio.subprocess.Process, port: int) -> None:
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise RuntimeError(f"upstream on port {port} exited with {process.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise RuntimeError(f"upstream on port {port} did not start within 10 s")
