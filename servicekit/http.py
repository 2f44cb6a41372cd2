"""Resilient HTTP from one Parley service to another.

Each service builds one ``UpstreamClient`` per upstream at start-up and closes it at shutdown.
Every attempt has explicit connect/read/write/pool timeouts and the whole call, retries included,
has a total deadline. A call is retried with jittered exponential backoff, or after the upstream's
``Retry-After``, only when repeating it cannot do harm; a circuit breaker per upstream stops
calling an upstream that keeps failing, so callers fail fast instead of queueing behind it. The
current request id travels on every call as ``X-Request-ID``.

A call ends in one of:

    httpx.Response             any answer below 500 except 429, untouched (4xx is never retried)
    UpstreamUnavailable (503)  the breaker is open, the deadline passed, or the last attempt ended
                               in a transport error, a 5xx or a 429; ``retry_after`` says when
                               the caller's own client may try again

The breaker is written here rather than taken from PyPI: ``purgatory`` routes every state change
through a message bus and unit of work and counts only raised exceptions (a 503 answer is not
one); ``pybreaker`` is synchronous (its async path needs Tornado) and ``aiobreaker``, its asyncio
fork, has seen no release in years; both read the wall clock. Parley needs a few dozen lines on
an injectable monotonic clock.
"""

from __future__ import annotations

import asyncio
import email.utils
import enum
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx
from tenacity import AsyncRetrying, RetryCallState, stop_after_attempt, stop_before_delay
from tenacity.wait import wait_random_exponential

from servicekit.errors import UpstreamUnavailable
from servicekit.logging import REQUEST_ID_HEADER, current_request_id

logger = logging.getLogger("servicekit.http")

IDEMPOTENCY_KEY_HEADER: Final = "Idempotency-Key"
IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# Answers that say "not now, try again": overloaded, or a gateway could not reach the upstream.
RETRYABLE_STATUSES: Final = frozenset({429, 502, 503, 504})
# Failures that happen before a byte of the request is sent, so any method may be retried.
_NOT_SENT_ERRORS: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class Timeouts:
    """Per-attempt timeouts and the deadline for the whole call, in seconds."""

    connect: float = 1.0
    read: float = 5.0
    write: float = 5.0
    pool: float = 1.0
    total: float = 10.0


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently an idempotent call is retried; durations in seconds."""

    attempts: int = 3
    backoff_initial: float = 0.1
    backoff_max: float = 2.0
    # An upstream asking for a longer pause than this is waited on for this long only.
    retry_after_max: float = 5.0


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Opens after ``failure_threshold`` failures in a row; lets one trial through after a pause."""

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        reset_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._consecutive_failures = 0
        self._opened_at = 0.0

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self.seconds_until_trial() == 0:
            return BreakerState.HALF_OPEN
        return self._state

    def seconds_until_trial(self) -> float:
        """How long the breaker stays open; 0 when it is not open."""
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.reset_timeout - self._clock())

    def try_acquire(self) -> bool:
        """Whether a call may go now; when half-open, only the one trial call may."""
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.OPEN and self.seconds_until_trial() == 0:
            self._state = BreakerState.HALF_OPEN
            return True
        return False

    def record_success(self) -> None:
        self._state = BreakerState.CLOSED
        self._consecutive_failures = 0

    def record_failure(self) -> None:
        self._consecutive_failures += 1
        if (
            self._state is BreakerState.HALF_OPEN
            or self._consecutive_failures >= self.failure_threshold
        ):
            self._state = BreakerState.OPEN
            self._opened_at = self._clock()


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or HTTP-date), if valid."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def is_retry_safe(request: httpx.Request) -> bool:
    """Whether sending ``request`` twice has the same effect as sending it once."""
    return request.method in IDEMPOTENT_METHODS or IDEMPOTENCY_KEY_HEADER in request.headers


async def _forward_request_id(request: httpx.Request) -> None:
    request_id = current_request_id()
    if request_id is not None and REQUEST_ID_HEADER not in request.headers:
        request.headers[REQUEST_ID_HEADER] = request_id


def _final_outcome(retry_state: RetryCallState) -> httpx.Response:
    """Surface the last attempt as it was: its response, or its exception raised again."""
    assert retry_state.outcome is not None
    response: httpx.Response = retry_state.outcome.result()
    return response


class UpstreamClient:
    """Calls one upstream service with timeouts, a deadline, safe retries and a circuit breaker."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.timeouts = timeouts or Timeouts()
        self.retry = retry or RetryPolicy()
        self.breaker = breaker or CircuitBreaker()
        self._backoff = wait_random_exponential(
            multiplier=self.retry.backoff_initial, max=self.retry.backoff_max
        )
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(
                connect=self.timeouts.connect,
                read=self.timeouts.read,
                write=self.timeouts.write,
                pool=self.timeouts.pool,
            ),
            transport=transport,
            event_hooks={"request": [_forward_request_id]},
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def get(
        self,
        url: str,
        *,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        return await self.request("GET", url, params=params, headers=headers)

    async def post(
        self, url: str, *, json: Any = None, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """POST ``json``; retried only when ``headers`` carry an ``Idempotency-Key``."""
        return await self.request("POST", url, json=json, headers=headers)

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send a request; raise ``UpstreamUnavailable`` unless the upstream answered usably."""
        request = self._client.build_request(
            method, url, params=params, json=json, content=content, headers=headers
        )
        retry_safe = is_retry_safe(request)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retry.attempts) | stop_before_delay(self.timeouts.total),
            wait=self._wait,
            retry=lambda state: self._should_retry(state, retry_safe=retry_safe),
            before_sleep=self._log_retry,
            retry_error_callback=_final_outcome,
        )
        try:
            async with asyncio.timeout(self.timeouts.total):
                response: httpx.Response = await retrying(self._send_once, request)
        except TimeoutError:
            raise self._unavailable(f"no answer within {self.timeouts.total} s") from None
        except httpx.TransportError as error:
            raise self._unavailable(type(error).__name__) from error
        if response.status_code >= 500 or response.status_code == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After")) or 1.0
            raise self._unavailable(f"answered {response.status_code}", retry_after)
        return response

    async def _send_once(self, request: httpx.Request) -> httpx.Response:
        if not self.breaker.try_acquire():
            raise self._unavailable("circuit open", self.breaker.seconds_until_trial())
        # Anything but an answer below 500, cancellation by the deadline included, is a failure.
        succeeded = False
        try:
            response = await self._client.send(request)
            succeeded = response.status_code < 500
            return response
        finally:
            if succeeded:
                self.breaker.record_success()
            else:
                self.breaker.record_failure()

    def _should_retry(self, retry_state: RetryCallState, *, retry_safe: bool) -> bool:
        assert retry_state.outcome is not None
        error = retry_state.outcome.exception()
        if error is None:
            response: httpx.Response = retry_state.outcome.result()
            return retry_safe and response.status_code in RETRYABLE_STATUSES
        if isinstance(error, _NOT_SENT_ERRORS):
            return True
        return retry_safe and isinstance(error, httpx.TransportError)

    def _wait(self, retry_state: RetryCallState) -> float:
        """The upstream's ``Retry-After`` (capped) when it gave one, else jittered backoff."""
        assert retry_state.outcome is not None
        if not retry_state.outcome.failed:
            response: httpx.Response = retry_state.outcome.result()
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is not None:
                return min(retry_after, self.retry.retry_after_max)
        return float(self._backoff(retry_state))

    def _log_retry(self, retry_state: RetryCallState) -> None:
        assert retry_state.outcome is not None
        outcome = retry_state.outcome
        logger.warning(
            "retrying upstream call",
            extra={
                "upstream": self.name,
                "attempt": retry_state.attempt_number,
                "failure": repr(outcome.exception())
                if outcome.failed
                else outcome.result().status_code,
                "wait_s": round(retry_state.upcoming_sleep, 3),
            },
        )

    def _unavailable(self, reason: str, retry_after: float = 1.0) -> UpstreamUnavailable:
        return UpstreamUnavailable(
            f"{self.name} is unavailable: {reason}", retry_after=math.ceil(retry_after)
        )
