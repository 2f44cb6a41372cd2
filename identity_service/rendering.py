"""HTML responses of the provider's pages: templates under a strict Content-Security-Policy."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from identity_service.state import identity_state


def content_security_policy(form_targets: Iterable[str] = ()) -> str:
    """No script, styles from here only, forms posting here (and redirecting to ``form_targets``
    afterwards, which browsers check too), never framed."""
    form_action = " ".join(["'self'", *sorted(set(form_targets))])
    return (
        "default-src 'none'; style-src 'self'; img-src 'self'; "
        f"form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    )


def origin_of(uri: str | None) -> list[str]:
    """The origin of ``uri`` as a one-item list (for ``form_targets``), or an empty one."""
    parts = urlsplit(uri or "")
    return [f"{parts.scheme}://{parts.netloc}"] if parts.scheme and parts.netloc else []


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any],
    *,
    status: int = 200,
    form_targets: Iterable[str] = (),
) -> Response:
    state = identity_state(request)
    response = state.templates.TemplateResponse(
        request, template, dict(context), status_code=status
    )
    response.headers["Content-Security-Policy"] = content_security_policy(form_targets)
    return response


def error_page(
    request: Request, status: int, heading: str, message: str, retry_url: str | None = None
) -> Response:
    return render(
        request,
        "error.html",
        {"heading": heading, "message": message, "retry_url": retry_url},
        status=status,
    )
