"""Security headers on every response the BFF sends: its pages, the SPA, the API and errors.

- A Content-Security-Policy without inline script or style, so injected markup cannot run;
  ``frame-ancestors 'none'`` against click-jacking; ``form-action`` allows the provider's origin
  because a form posted to ``/bff/logout`` redirects there.
- ``nosniff``, no referrer (URLs may carry ids), a same-origin opener policy.
- HSTS only when the BFF is served over HTTPS: sent over plain HTTP it is ignored at best.
- ``Cache-Control: no-store`` on ``/bff/*``: user data and redirects with one-time values
  must not be kept by any cache.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HSTS_MAX_AGE_SECONDS: Final = 2 * 365 * 24 * 3600  # two years, as the HSTS preload list asks


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(provider_issuer: str) -> str:
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",  # CSP3: 'self' covers ws:/wss: to this host for /realtime
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
            f"form-action 'self' {_origin(provider_issuer)}",
        ]
    )


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, public_url: str, provider_issuer: str) -> None:
        self.app = app
        headers = {
            "Content-Security-Policy": content_security_policy(provider_issuer),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cross-Origin-Opener-Policy": "same-origin",
            "Cross-Origin-Resource-Policy": "same-origin",
            "X-Frame-Options": "DENY",  # frame-ancestors for browsers without CSP2
        }
        if urlsplit(public_url).scheme == "https":
            headers["Strict-Transport-Security"] = f"max-age={HSTS_MAX_AGE_SECONDS}"
        self._headers: Final = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        no_store = scope["path"].startswith("/bff/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self._headers.items():
                    headers[name] = value
                if no_store:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)
