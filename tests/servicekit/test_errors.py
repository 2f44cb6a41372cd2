"""Every error a client sees is RFC 9457 problem+json with a stable code; nothing else leaks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conversations_service.settings import load_settings
from servicekit.app import create_service_app
from servicekit.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InsufficientScope,
    MethodNotAllowed,
    NotFound,
    ParleyError,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
    UpstreamUnavailable,
    ValidationFailed,
)

INTERNAL_DETAIL = "connection string postgresql://parley:hunter2@db leaked"

# (error class, status, code, title) for every client-visible error.
ERROR_CLASSES = [
    (ParleyError, 500, "internal_error", "Internal server error"),
    (BadRequest, 400, "bad_request", "Bad request"),
    (ValidationFailed, 422, "validation_failed", "Validation failed"),
    (Unauthorized, 401, "unauthorized", "Authentication required"),
    (Forbidden, 403, "forbidden", "Forbidden"),
    (InsufficientScope, 403, "insufficient_scope", "The access token lacks a required scope"),
    (NotFound, 404, "not_found", "Not found"),
    (MethodNotAllowed, 405, "method_not_allowed", "Method not allowed"),
    (Conflict, 409, "conflict", "Conflict"),
    (PayloadTooLarge, 413, "payload_too_large", "Payload too large"),
    (UnsupportedMediaType, 415, "unsupported_media_type", "Unsupported media type"),
    (RateLimited, 429, "rate_limited", "Too many requests"),
    (ServiceUnavailable, 503, "service_unavailable", "Service unavailable"),
    (
        UpstreamUnavailable,
        503,
        "upstream_unavailable",
        "A service this request depends on is unavailable",
    ),
]
ERRORS_BY_NAME: dict[str, ParleyError] = {
    error_class.__name__: error_class(f"{error_class.__name__} happened")
    for error_class, *_ in ERROR_CLASSES
}


async def raise_named_error(request: Request) -> Response:
    raise ERRORS_BY_NAME[request.path_params["name"]]


async def reject_invalid_message(request: Request) -> Response:
    raise ValidationFailed(
        "The message is invalid.",
        errors=[{"field": "body", "message": "must not be empty"}],
    )


async def limit_rate(request: Request) -> Response:
    raise RateLimited("Slow down.", retry_after=30)


async def add_member_twice(request: Request) -> Response:
    raise Conflict("alice is already a member.", code="duplicate_member")


async def crash(request: Request) -> Response:
    raise RuntimeError(INTERNAL_DETAIL)


async def read_item(request: Request) -> Response:
    return Response("item")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_service_app(
        load_settings({}),
        routes=[
            Route("/errors/{name}", raise_named_error),
            Route("/messages", reject_invalid_message, methods=["POST"]),
            Route("/busy", limit_rate),
            Route("/members", add_member_twice, methods=["POST"]),
            Route("/crash", crash),
            Route("/items/{item_id}", read_item, methods=["GET"]),
        ],
        dependencies={},
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as client:
        yield client


@pytest.mark.parametrize(("error_class", "status", "code", "title"), ERROR_CLASSES)
async def test_each_error_renders_as_problem_json(
    client: httpx.AsyncClient, error_class: type[ParleyError], status: int, code: str, title: str
) -> None:
    response = await client.get(f"/errors/{error_class.__name__}")

    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert problem["code"] == code
    assert problem["type"] == f"https://parley.chat/problems/{code}"
    assert problem["title"] == title
    assert problem["detail"] == f"{error_class.__name__} happened"
    assert problem["instance"] == f"/errors/{error_class.__name__}"


def test_an_error_without_a_message_uses_its_title_as_detail() -> None:
    assert NotFound().to_problem()["detail"] == "Not found"


async def test_validation_failed_names_each_invalid_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/messages")

    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "body", "message": "must not be empty"}]


async def test_rate_limited_tells_the_client_when_to_retry(client: httpx.AsyncClient) -> None:
    response = await client.get("/busy")

    assert response.status_code == 429
    assert response.headers["retry-after"] == "30"


@pytest.mark.parametrize("error_class", [RateLimited, ServiceUnavailable, UpstreamUnavailable])
def test_retryable_errors_ask_for_a_retry_after_at_least_one_second(
    error_class: type[RateLimited | ServiceUnavailable],
) -> None:
    assert error_class(retry_after=0).headers == {"Retry-After": "1"}
    assert error_class(retry_after=7).headers == {"Retry-After": "7"}


async def test_a_call_site_can_name_the_exact_case(client: httpx.AsyncClient) -> None:
    response = await client.post("/members")

    assert response.status_code == 409
    assert response.json()["code"] == "duplicate_member"
    assert response.json()["detail"] == "alice is already a member."


async def test_an_unknown_route_is_a_not_found_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/no/such/route")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"
    assert response.json()["instance"] == "/no/such/route"


async def test_a_wrong_method_is_a_method_not_allowed_problem(client: httpx.AsyncClient) -> None:
    response = await client.delete("/items/42")

    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "method_not_allowed"
    assert "GET" in response.headers["allow"]


async def test_an_unexpected_exception_is_an_opaque_internal_error(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = await client.get("/crash", headers={"X-Request-ID": "crash-1"})

    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "internal_error"
    assert problem["instance"] == "/crash"
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text
    # The caller can quote the request id, and the full error is logged under it.
    assert response.headers["x-request-id"] == "crash-1"
    [logged] = [record for record in caplog.records if record.name == "servicekit.errors"]
    assert logged.exc_info is not None
    assert logged.exc_info[1] is not None
    assert str(logged.exc_info[1]) == INTERNAL_DETAIL
