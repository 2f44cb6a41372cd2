"""The shared service skeleton: liveness, readiness, shutdown and Prometheus metrics."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import httpx
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message

from conversations_service.settings import load_settings
from servicekit.app import Dependency, create_service_app
from servicekit.health import CHECK_TIMEOUT_SECONDS, run_checks


class FakeDependency:
    """A dependency whose readiness the test decides: fine, failing or hanging."""

    def __init__(self, failure: Exception | None = None, *, hangs: bool = False) -> None:
        self.failure = failure
        self.hangs = hangs
        self.closed = False

    async def check(self) -> None:
        if self.hangs:
            await asyncio.Event().wait()
        if self.failure is not None:
            raise self.failure

    async def close(self) -> None:
        self.closed = True


async def read_item(request: Request) -> Response:
    return Response("item")


async def report_requests_in_flight(request: Request) -> Response:
    in_flight = request.app.state.metrics.registry.get_sample_value(
        "parley_http_requests_in_flight"
    )
    return JSONResponse({"in_flight": in_flight})


def build_app(dependencies: dict[str, Dependency] | None = None) -> Starlette:
    return create_service_app(
        load_settings({}),
        routes=[
            Route("/items/{item_id}", read_item),
            Route("/in-flight", report_requests_in_flight),
        ],
        dependencies=dependencies or {},
    )


def client_for(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service.test")


@contextlib.asynccontextmanager
async def running(app: Starlette) -> AsyncIterator[None]:
    """Run ``app``'s ASGI lifespan around the block, as a server does at start-up and shutdown."""
    to_app: asyncio.Queue[Message] = asyncio.Queue()
    from_app: asyncio.Queue[Message] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    lifespan = asyncio.create_task(app(scope, to_app.get, from_app.put))
    await to_app.put({"type": "lifespan.startup"})
    assert (await from_app.get())["type"] == "lifespan.startup.complete"
    try:
        yield
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        assert (await from_app.get())["type"] == "lifespan.shutdown.complete"
        await lifespan


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample /metrics exposes, keyed by name and labels."""
    response = await client.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


async def test_healthz_answers_with_the_service_name() -> None:
    async with client_for(build_app()) as client:
        response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "service": "conversations_service"}


async def test_healthz_does_not_depend_on_dependencies() -> None:
    app = build_app({"database": FakeDependency(ConnectionRefusedError())})
    async with client_for(app) as client:
        response = await client.get("/healthz")

    assert response.status_code == 200


async def test_readyz_is_ready_when_every_dependency_answers() -> None:
    app = build_app({"database": FakeDependency(), "redis": FakeDependency()})
    async with client_for(app) as client:
        response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "redis": "ok"}}


async def test_readyz_names_the_failing_dependency() -> None:
    app = build_app({"database": FakeDependency(), "redis": FakeDependency(ConnectionError())})
    async with client_for(app) as client:
        response = await client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "not ready",
        "checks": {"database": "ok", "redis": "ConnectionError"},
    }


async def test_readyz_reports_a_hanging_dependency_as_timed_out() -> None:
    app = build_app({"database": FakeDependency(hangs=True), "redis": FakeDependency()})
    async with client_for(app) as client:
        started = time.monotonic()
        response = await client.get("/readyz")
        elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "timed out after 1 s", "redis": "ok"}
    assert elapsed < CHECK_TIMEOUT_SECONDS + 0.5


async def test_readiness_checks_run_concurrently() -> None:
    hanging = {name: FakeDependency(hangs=True).check for name in ("a", "b", "c")}

    started = time.monotonic()
    results = await run_checks(hanging, timeout_seconds=0.1)
    elapsed = time.monotonic() - started

    assert results == dict.fromkeys(hanging, "timed out after 0.1 s")
    # One timeout, not three in a row.
    assert elapsed < 0.25


async def test_dependencies_are_on_app_state_and_closed_at_shutdown() -> None:
    database, redis = FakeDependency(), FakeDependency()
    app = build_app({"database": database, "redis": redis})

    async with running(app):
        assert app.state.database is database
        assert app.state.redis is redis
        assert not database.closed
        assert not redis.closed

    assert database.closed
    assert redis.closed


async def test_a_services_own_lifespan_ends_before_its_dependencies_close() -> None:
    database = FakeDependency()
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def background_work(app: Starlette) -> AsyncIterator[None]:
        events.append("started")
        yield
        events.append(f"stopped, database closed: {database.closed}")

    app = create_service_app(
        load_settings({}), dependencies={"database": database}, lifespan=background_work
    )
    async with running(app):
        assert events == ["started"]

    assert events == ["started", "stopped, database closed: False"]
    assert database.closed


async def test_metrics_count_requests_by_route_template_and_status() -> None:
    async with client_for(build_app()) as client:
        for item_id in ("42", "7", "42"):
            await client.get(f"/items/{item_id}")
        await client.post("/items/42")
        samples = await scrape(client)

    template = "/items/{item_id}"
    count = "parley_http_requests_total"
    assert samples[(count, labels(method="GET", route=template, status="200"))] == 3
    assert samples[(count, labels(method="POST", route=template, status="405"))] == 1
    assert not any("/items/42" in dict(key[1]).get("route", "") for key in samples)


async def test_metrics_time_requests_in_a_histogram() -> None:
    async with client_for(build_app()) as client:
        await client.get("/items/1")
        await client.get("/items/2")
        samples = await scrape(client)

    histogram = "parley_http_request_duration_seconds"
    route = labels(method="GET", route="/items/{item_id}")
    assert samples[(f"{histogram}_count", route)] == 2
    assert samples[(f"{histogram}_bucket", route | labels(le="+Inf"))] == 2
    assert samples[(f"{histogram}_sum", route)] > 0


async def test_metrics_gauge_the_requests_in_flight() -> None:
    app = build_app()
    async with client_for(app) as client:
        during = (await client.get("/in-flight")).json()["in_flight"]

    assert during == 1
    assert app.state.metrics.registry.get_sample_value("parley_http_requests_in_flight") == 0


async def test_unmatched_paths_share_one_label() -> None:
    async with client_for(build_app()) as client:
        await client.get("/no/such/route")
        await client.get("/another/unknown/path")
        samples = await scrape(client)

    unmatched = labels(method="GET", route="unmatched", status="404")
    assert samples[("parley_http_requests_total", unmatched)] == 2


async def test_two_apps_in_one_process_keep_separate_metrics() -> None:
    first, second = build_app(), build_app()
    async with client_for(first) as first_client, client_for(second) as second_client:
        await first_client.get("/items/1")
        await first_client.get("/items/2")
        await second_client.get("/items/3")
        first_samples = await scrape(first_client)
        second_samples = await scrape(second_client)

    ok = (
        "parley_http_requests_total",
        labels(method="GET", route="/items/{item_id}", status="200"),
    )
    assert first_samples[ok] == 2
    assert second_samples[ok] == 1
