"""Cross-site request forgery defence for cookie-authenticated calls.

A cross-site page can make a browser send the session cookie (a form post, an ``<img>``, a
``fetch`` without CORS), but it cannot add a custom header without a CORS preflight, which the
BFF never grants to another origin (it has no CORS middleware). So every cookie-authenticated
``/bff/user`` and ``/api/*`` call must carry ``X-CSRF: 1``. ``SameSite=Strict`` on the session
cookie is a second, independent line.
"""

from __future__ import annotations

from typing import Final

from starlette.requests import HTTPConnection

from servicekit.errors import Forbidden

CSRF_HEADER: Final = "X-CSRF"


def require_csrf_header(connection: HTTPConnection) -> None:
    """Raise ``Forbidden`` unless the request carries ``X-CSRF: 1``."""
    if connection.headers.getlist(CSRF_HEADER) != ["1"]:
        raise Forbidden("A browser call needs the header X-CSRF: 1.", code="csrf_required")
