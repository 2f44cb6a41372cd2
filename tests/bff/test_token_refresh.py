"""Access-token refresh behind the proxy: single-flight across processes, rotation, failure."""

from __future__ import annotations

import asyncio

import httpx

from tests.bff.conftest import Browser, EchoApi, RunningBff, bff_environment, running_bff
from tests.bff.scripted_provider import ScriptedProvider

CONCURRENT_REQUESTS = 50


async def api_calls(
    browser: Browser, urls: list[str], count: int = CONCURRENT_REQUESTS
) -> list[httpx.Response]:
    """``count`` concurrent API calls from one browser, spread over the BFFs at ``urls``."""
    return await asyncio.gather(
        *(
            browser.http.get(f"{urls[i % len(urls)]}/api/conversations", headers={"X-CSRF": "1"})
            for i in range(count)
        )
    )


async def test_a_fresh_access_token_is_used_without_refreshing(
    browser: Browser, provider: ScriptedProvider
) -> None:
    await browser.sign_in()

    responses = await api_calls(browser, [browser.bff.url], count=10)

    assert [r.status_code for r in responses] == [200] * 10
    assert provider.refreshes == 0


async def test_concurrent_calls_on_two_bff_processes_with_an_expired_token_refresh_once(
    browser: Browser,
    bff: RunningBff,
    provider: ScriptedProvider,
    echo_api: EchoApi,
    redis_url: str,
    redis_namespace: str,
) -> None:
    await browser.sign_in()
    provider.behaviour.refresh_delay_seconds = 0.3  # so that every call arrives mid-refresh
    environ = bff_environment(
        provider.url, redis_url, redis_namespace, CONVERSATIONS_URL=echo_api.url
    )
    # A second BFF process behind the same load balancer: same secret, same Redis, same clock.
    async with running_bff(environ, clock=bff.clock) as second:
        bff.clock.advance(provider.behaviour.access_token_lifetime_seconds)

        responses = await api_calls(browser, [bff.url, second.url])

        assert [r.status_code for r in responses] == [200] * CONCURRENT_REQUESTS
        assert {r.json()["sub"] for r in responses} == {provider.next_user["sub"]}
        assert provider.refreshes == 1

        # The rotated refresh token was kept: the provider accepts only the newest one.
        bff.clock.advance(provider.behaviour.access_token_lifetime_seconds)
        responses = await api_calls(browser, [bff.url, second.url])

        assert [r.status_code for r in responses] == [200] * CONCURRENT_REQUESTS
        assert provider.refreshes == 2


async def test_refresh_refused_by_the_provider_ends_the_session(
    browser: Browser, bff: RunningBff, provider: ScriptedProvider
) -> None:
    await browser.sign_in()
    provider.behaviour.refresh_error = "invalid_grant"
    bff.clock.advance(provider.behaviour.access_token_lifetime_seconds)

    refused = await browser.api()

    assert refused.status_code == 401
    assert refused.json()["code"] == "session_ended"
    assert (await browser.user()).status_code == 401
    provider.behaviour.refresh_error = None
    assert (await browser.api()).status_code == 401  # gone for good, not just this once


async def test_unreachable_provider_at_refresh_is_a_503_and_keeps_the_session(
    browser: Browser, bff: RunningBff, provider: ScriptedProvider
) -> None:
    await browser.sign_in()
    provider.token_endpoint.failure_status = 503
    bff.clock.advance(provider.behaviour.access_token_lifetime_seconds)

    unavailable = await browser.api()

    assert unavailable.status_code == 503
    assert "retry-after" in unavailable.headers
    assert (await browser.user()).status_code == 200
    provider.token_endpoint.failure_status = None
    assert (await browser.api()).status_code == 200
    assert provider.refreshes == 1


async def test_refresh_is_requested_for_the_api_audience(
    browser: Browser, bff: RunningBff, provider: ScriptedProvider
) -> None:
    await browser.sign_in()
    bff.clock.advance(provider.behaviour.access_token_lifetime_seconds)

    assert (await browser.api()).status_code == 200

    form = provider.token_requests[-1].form
    assert form["grant_type"] == "refresh_token"
    assert form["resource"] == form["audience"] == provider.audience
