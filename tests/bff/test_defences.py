"""Browser-facing defences: CSRF, no CORS, security headers, no token ever in a response."""

from __future__ import annotations

import httpx
import pytest

from tests.bff.conftest import Browser, RunningBff
from tests.bff.scripted_provider import ScriptedProvider

JWT_PREFIX = "eyJ"  # base64url of '{"': every JWT starts with it


async def test_user_without_csrf_header_is_refused(browser: Browser) -> None:
    await browser.sign_in()

    for headers in ({}, {"X-CSRF": "0"}, {"X-CSRF": "true"}):
        refused = await browser.http.get("/bff/user", headers=headers)
        assert refused.status_code == 403
        assert refused.json()["code"] == "csrf_required"
    assert (await browser.user()).status_code == 200


async def test_api_call_with_the_cookie_but_without_csrf_header_is_refused(
    browser: Browser,
) -> None:
    await browser.sign_in()

    refused = await browser.http.get("/api/conversations")
    form_post = await browser.http.post(
        "/api/conversations", data={"kind": "group"}, headers={"Origin": "https://evil.example"}
    )

    assert refused.status_code == 403
    assert form_post.status_code == 403
    assert (await browser.api()).status_code == 200


async def test_api_call_without_a_session_is_401(browser: Browser) -> None:
    anonymous = await browser.api()

    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("path", ["/api/conversations", "/bff/user", "/bff/logout"])
async def test_cross_origin_preflight_gets_no_cors_grant(bff: RunningBff, path: str) -> None:
    async with httpx.AsyncClient(base_url=bff.url) as http:
        preflight = await http.options(
            path,
            headers={
                "Origin": "https://evil.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-csrf",
            },
        )

    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-credentials" not in preflight.headers
    assert "access-control-allow-headers" not in preflight.headers


@pytest.mark.parametrize(
    "path", ["/", "/index.html", "/bff/user", "/bff/callback", "/api/conversations", "/healthz"]
)
async def test_every_response_carries_the_security_headers(
    bff: RunningBff, provider: ScriptedProvider, path: str
) -> None:
    async with httpx.AsyncClient(base_url=bff.url) as http:
        response = await http.get(path)

    csp = response.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["base-uri"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["form-action"] == f"'self' {provider.url}"
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cross-origin-opener-policy"] == "same-origin"
    if path.startswith("/bff/"):
        assert response.headers["cache-control"] == "no-store"


async def test_no_token_reaches_the_browser_in_a_whole_sign_in(
    browser: Browser, provider: ScriptedProvider
) -> None:
    await browser.sign_in("/conversations")
    await browser.user()
    await browser.api()
    await browser.http.get("/")
    await browser.http.get((await browser.user()).json()["logout_url"])

    bff_responses = [r for r in browser.responses if str(r.url).startswith(browser.bff.url)]
    assert len(bff_responses) >= 6
    for response in bff_responses:
        assert JWT_PREFIX not in response.text, response.url
        for name, value in response.headers.multi_items():
            assert JWT_PREFIX not in value, (response.url, name)
