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


def security_headers(public_url: str, provider_issuer: str) -> dict[str, str]:
    """The headers on every BFF response."""
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
    return headers
