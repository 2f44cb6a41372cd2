"""Security headers on every response of the provider.

Its pages and redirects carry sign-in state (authorization requests, codes, pending-request ids)
in URLs, so nothing is sent as a referrer and nothing is cached unless a route says otherwise.
A route's own Content-Security-Policy (the pages set one naming their form targets) wins over
the default, which allows nothing at all.
"""

from __future__ import annotations

from typing import Final

from starlette.types import ASGIApp

import servicekit.security_headers

DEFAULT_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    "Cache-Control": "no-store",
}
FIXED_HEADERS: Final = {
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # for browsers that predate CSP frame-ancestors
}


class SecurityHeadersMiddleware(servicekit.security_headers.SecurityHeadersMiddleware):
    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app, always=FIXED_HEADERS, unless_set=DEFAULT_HEADERS)
