"""HTML responses of the provider's pages: templates under a strict Content-Security-Policy,
and the forms on them.

Every form carries a CSRF token bound to this browser and to the form's purpose (see
``browser.py``); ``read_checked_form`` refuses a POST without the right one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from authlib.oauth2 import OAuth2Error
from starlette.requests import Request
from starlette.responses import Response

from identity_service.oauth_server import read_form
from identity_service.state import identity_state


@dataclass(frozen=True)
class FormField:
    """One input of a form, as ``_form.html`` renders it."""

    name: str
    label: str
    type: str = "text"
    autocomplete: str = "off"
    value: str = ""
    error: str | None = None
    hint: str | None = None
    required: bool = True
    max_length: int | None = None


@dataclass(frozen=True)
class Link:
    href: str
    text: str


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


def render_form(
    request: Request,
    template: str,
    purpose: str,
    context: Mapping[str, Any],
    *,
    status: int = 200,
    form_targets: Iterable[str] = (),
) -> Response:
    """A page with a form whose CSRF token is for ``purpose`` in this browser."""
    cookies = identity_state(request).cookies
    browser_token = cookies.browser_token(request)
    context = {**context, "csrf_token": cookies.csrf_token(browser_token, purpose)}
    response = render(request, template, context, status=status, form_targets=form_targets)
    cookies.remember_browser(response, browser_token)
    return response


def error_page(
    request: Request,
    status: int,
    heading: str,
    message: str,
    retry_url: str | None = None,
    retry_text: str = "Try again",
) -> Response:
    return render(
        request,
        "error.html",
        {
            "heading": heading,
            "message": message,
            "retry": Link(retry_url, retry_text) if retry_url else None,
        },
        status=status,
    )


def notice_page(
    request: Request, heading: str, paragraphs: Iterable[str], links: Iterable[Link] = ()
) -> Response:
    """The outcome of a form: what happened and where to go next."""
    return render(
        request,
        "notice.html",
        {"heading": heading, "paragraphs": list(paragraphs), "links": list(links)},
    )


class FormRejected(Exception):
    """A POSTed form that cannot be acted on; ``response`` is the page that says so."""

    def __init__(self, response: Response) -> None:
        self.response = response
        super().__init__(response.status_code)


async def read_checked_form(request: Request, purpose: str, retry_url: str) -> dict[str, str]:
    """The POSTed form, if it is readable and came from a page this browser was given for
    ``purpose``; otherwise ``FormRejected`` (400 or 403)."""
    try:
        form = dict(await read_form(request))
    except OAuth2Error as error:
        raise FormRejected(
            error_page(request, 400, "This form could not be read", "Please try again.", retry_url)
        ) from error
    if not identity_state(request).cookies.csrf_is_valid(
        request, form.get("csrf_token", ""), purpose
    ):
        raise FormRejected(
            error_page(
                request,
                403,
                "This form has expired",
                "The form was not sent from a page this browser opened. Please try again.",
                retry_url,
            )
        )
    return form


def describe_wait(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} seconds"
    return f"{-(-seconds // 60)} minutes"


def client_address(request: Request) -> str:
    """Who throttles count a request against: the peer uvicorn reports (behind a proxy, the
    forwarded client, as ``--proxy-headers`` makes it)."""
    return request.client.host if request.client else "unknown"
