"""Errors that Parley shows to clients, rendered as RFC 9457 problem details.

Every error a client can see is a ``ParleyError``: it carries an HTTP status, a stable
machine-readable ``code`` and a human message. One Starlette exception handler turns any of them
into ``application/problem+json``; anything else becomes a 500 whose details are logged, never
shown.

    ParleyError (500 internal_error)
    ├── BadRequest (400 bad_request)
    │   └── ValidationFailed (422 validation_failed, with per-field ``errors``)
    ├── Unauthorized (401 unauthorized)
    ├── Forbidden (403 forbidden)
    │   └── InsufficientScope (403 insufficient_scope)
    ├── NotFound (404 not_found)
    ├── MethodNotAllowed (405 method_not_allowed)
    ├── Conflict (409 conflict)
    ├── PayloadTooLarge (413 payload_too_large)
    ├── UriTooLong (414 uri_too_long)
    ├── UnsupportedMediaType (415 unsupported_media_type)
    ├── RateLimited (429 rate_limited, with ``Retry-After``)
    ├── RequestHeadersTooLarge (431 request_headers_too_large)
    ├── BadGateway (502 bad_gateway)
    └── ServiceUnavailable (503 service_unavailable, with ``Retry-After``)
        └── UpstreamUnavailable (503 upstream_unavailable)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PROBLEM_CONTENT_TYPE = "application/problem+json"

logger = logging.getLogger("servicekit.errors")


class ParleyError(Exception):
    """Base of every client-visible error: an HTTP status, a stable code and a message."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal server error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.detail = detail or self.title
        # A subclass fixes the family (status); a call site may name the exact case.
        self.instance_code = code or self.code
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})
        super().__init__(self.detail)

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        """The RFC 9457 problem object for this error."""
        problem: dict[str, Any] = {
            "type": f"https://parley.chat/problems/{self.instance_code}",
            "title": self.title,
            "status": self.status,
            "code": self.instance_code,
            "detail": self.detail,
        }
        if instance is not None:
            problem["instance"] = instance
        problem.update(self.extra)
        return problem


class BadRequest(ParleyError):
    status = 400
    code = "bad_request"
    title = "Bad request"


class ValidationFailed(BadRequest):
    """The request was well-formed but its content is invalid; ``errors`` names each field."""

    status = 422
    code = "validation_failed"
    title = "Validation failed"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: list[dict[str, str]] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(detail, code=code, extra={"errors": errors or []})


class Unauthorized(ParleyError):
    status = 401
    code = "unauthorized"
    title = "Authentication required"


class Forbidden(ParleyError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class InsufficientScope(Forbidden):
    code = "insufficient_scope"
    title = "The access token lacks a required scope"


class NotFound(ParleyError):
    status = 404
    code = "not_found"
    title = "Not found"


class MethodNotAllowed(ParleyError):
    status = 405
    code = "method_not_allowed"
    title = "Method not allowed"


class Conflict(ParleyError):
    status = 409
    code = "conflict"
    title = "Conflict"


class PayloadTooLarge(ParleyError):
    status = 413
    code = "payload_too_large"
    title = "Payload too large"


class UriTooLong(ParleyError):
    status = 414
    code = "uri_too_long"
    title = "Request target too long"


class RequestHeadersTooLarge(ParleyError):
    status = 431
    code = "request_headers_too_large"
    title = "Request header fields too large"


class BadGateway(ParleyError):
    """A service this request depends on answered with something that cannot be passed on."""

    status = 502
    code = "bad_gateway"
    title = "Bad gateway"


class UnsupportedMediaType(ParleyError):
    status = 415
    code = "unsupported_media_type"
    title = "Unsupported media type"


class _RetryableError(ParleyError):
    """An error the client may retry after ``retry_after`` seconds."""

    def __init__(
        self,
        detail: str | None = None,
        *,
        retry_after: int = 1,
        code: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.retry_after = max(1, int(retry_after))
        super().__init__(
            detail, code=code, extra=extra, headers={"Retry-After": str(self.retry_after)}
        )


class RateLimited(_RetryableError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"


class ServiceUnavailable(_RetryableError):
    status = 503
    code = "service_unavailable"
    title = "Service unavailable"


class UpstreamUnavailable(ServiceUnavailable):
    code = "upstream_unavailable"
    title = "A service this request depends on is unavailable"


# Starlette raises HTTPException for routing failures (404, 405); give them stable codes too.
_HTTP_EXCEPTION_CLASSES: dict[int, type[ParleyError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    429: RateLimited,
    503: ServiceUnavailable,
}


def problem_response(error: ParleyError, instance: str | None = None) -> JSONResponse:
    """Render ``error`` as an ``application/problem+json`` response."""
    return JSONResponse(
        error.to_problem(instance),
        status_code=error.status,
        headers=error.headers,
        media_type=PROBLEM_CONTENT_TYPE,
    )


async def handle_parley_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ParleyError)
    if exc.status >= 500:
        logger.warning("request failed", extra={"code": exc.instance_code, "status": exc.status})
    return problem_response(exc, request.url.path)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error = _HTTP_EXCEPTION_CLASSES.get(exc.status_code, BadRequest)(exc.detail)
    response = problem_response(error, request.url.path)
    response.headers.update(exc.headers or {})
    return response


async def handle_unexpected_error(request: Request, exc: Exception) -> Response:
    """Log an unexpected exception in full and answer with an opaque 500."""
    logger.error("unhandled error", exc_info=exc)
    return problem_response(
        ParleyError("The server could not complete the request."), request.url.path
    )


class UnexpectedErrorMiddleware:
    """Answers an unexpected exception with the opaque 500 *inside* the request's middleware.

    Starlette sends its ``Exception`` handler's response from its outermost middleware, after
    the request id is unbound: that 500 would carry no ``X-Request-ID`` and its log line no
    ``request_id``. Placed inside ``RequestContextMiddleware``, this one keeps both.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response_started = False

        async def send_noting_start(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, send_noting_start)
        except Exception as error:
            if response_started:
                raise
            response = await handle_unexpected_error(Request(scope), error)
            await response(scope, receive, send)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ParleyError: handle_parley_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected_error,
}
