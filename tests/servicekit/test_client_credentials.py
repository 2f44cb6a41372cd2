"""Client-credentials tokens for service-to-service calls, fetched from a real issuer over HTTP."""

from __future__ import annotations

import asyncio
import base64
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from servicekit.client_credentials import ClientCredentialsTokenSource
from servicekit.errors import UpstreamUnavailable
from servicekit.tokens import AccessTokenVerifier
from tests.support.issuer import IssuerHost, LocalIssuer, ManualClock
from tests.support.servers import free_port

CLIENT_ID = "reports-bot"
CLIENT_SECRET = "s3:cr%41t/+ x"  # RFC 6749 §2.3.1 form-encodes it inside Basic auth


@pytest.fixture
def issuer(issuer_host: IssuerHost) -> LocalIssuer:
    issuer = issuer_host.fresh_issuer()
    issuer.register_client(CLIENT_ID, CLIENT_SECRET, scopes="chat.read chat.write")
    return issuer


@pytest.fixture
def source(
    issuer: LocalIssuer, http_client: httpx.AsyncClient, clock: ManualClock
) -> ClientCredentialsTokenSource:
    return ClientCredentialsTokenSource(
        http_client,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        audience=issuer.audience,
        scopes=["chat.read"],
        token_endpoint=f"{issuer.url}/token",
        clock=clock,
    )


async def test_token_is_a_machine_token_the_api_accepts(
    issuer: LocalIssuer, http_client: httpx.AsyncClient, source: ClientCredentialsTokenSource
) -> None:
    verifier = AccessTokenVerifier(issuer.url, issuer.audience, http_client)

    principal = await verifier.verify(await source.token())

    assert principal.kind == "machine"
    assert principal.id == f"machine:{CLIENT_ID}"
    assert principal.scopes == {"chat.read"}


async def test_request_names_the_audience_both_ways_and_authenticates_with_basic(
    issuer: LocalIssuer, source: ClientCredentialsTokenSource
) -> None:
    await source.token()

    [request] = issuer.token_requests
    assert request.form == {
        "grant_type": "client_credentials",
        "audience": issuer.audience,
        "resource": issuer.audience,
        "scope": "chat.read",
    }
    assert request.authorization is not None
    scheme, _, credentials = request.authorization.partition(" ")
    client_id, _, secret = base64.b64decode(credentials).decode().partition(":")
    assert (scheme, unquote(client_id), unquote(secret)) == ("Basic", CLIENT_ID, CLIENT_SECRET)


async def test_token_is_reused_until_it_is_due_for_renewal(
    issuer: LocalIssuer, source: ClientCredentialsTokenSource, clock: ManualClock
) -> None:
    issuer.token_endpoint.lifetime_seconds = 100  # renewal margin: max(30 s, 10 %) = 30 s

    first = await source.token()
    clock.advance(69)
    assert await source.token() == first
    assert len(issuer.token_requests) == 1

    clock.advance(2)
    renewed = await source.token()
    assert renewed != first
    assert len(issuer.token_requests) == 2


async def test_long_lived_token_is_renewed_a_tenth_of_its_lifetime_early(
    issuer: LocalIssuer, source: ClientCredentialsTokenSource, clock: ManualClock
) -> None:
    issuer.token_endpoint.lifetime_seconds = 3600  # margin 360 s

    await source.token()
    clock.advance(3239)
    await source.token()
    assert len(issuer.token_requests) == 1
    clock.advance(2)
    await source.token()
    assert len(issuer.token_requests) == 2


async def test_short_lived_token_is_still_reused_for_half_its_lifetime(
    issuer: LocalIssuer, source: ClientCredentialsTokenSource, clock: ManualClock
) -> None:
    issuer.token_endpoint.lifetime_seconds = 20

    await source.token()
    clock.advance(9)
    await source.token()

    assert len(issuer.token_requests) == 1


async def test_concurrent_callers_share_one_token_request(
    issuer: LocalIssuer, source: ClientCredentialsTokenSource
) -> None:
    issuer.token_endpoint.delay_seconds = 0.2  # all callers arrive while the request runs

    tokens = await asyncio.gather(*(source.token() for _ in range(10)))

    assert len(set(tokens)) == 1
    assert len(issuer.token_requests) == 1


async def test_token_endpoint_is_found_by_discovery(
    issuer: LocalIssuer, http_client: httpx.AsyncClient
) -> None:
    source = ClientCredentialsTokenSource(
        http_client,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        audience=issuer.audience,
        issuer=issuer.url,
    )

    await source.token()

    assert issuer.discovery_fetches == 1
    assert issuer.token_requests[0].form["grant_type"] == "client_credentials"
    assert "scope" not in issuer.token_requests[0].form


async def test_discovery_naming_another_issuer_is_refused(
    issuer: LocalIssuer, http_client: httpx.AsyncClient
) -> None:
    issuer.advertised_issuer = "https://evil.example"
    source = ClientCredentialsTokenSource(
        http_client,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        audience=issuer.audience,
        issuer=issuer.url,
    )

    with pytest.raises(UpstreamUnavailable):
        await source.token()
    assert issuer.token_requests == []


async def test_refused_credentials_are_upstream_unavailable(
    issuer: LocalIssuer, http_client: httpx.AsyncClient
) -> None:
    source = ClientCredentialsTokenSource(
        http_client,
        client_id=CLIENT_ID,
        client_secret="wrong",
        audience=issuer.audience,
        token_endpoint=f"{issuer.url}/token",
    )

    with pytest.raises(UpstreamUnavailable) as caught:
        await source.token()
    assert caught.value.status == 503
    assert caught.value.headers["Retry-After"] == "5"
    assert "wrong" not in caught.value.detail


async def test_providers_retry_after_is_passed_on_and_respected(
    issuer: LocalIssuer, source: ClientCredentialsTokenSource, clock: ManualClock
) -> None:
    issuer.token_endpoint.failure_status = 503
    issuer.token_endpoint.failure_headers = {"Retry-After": "7"}

    with pytest.raises(UpstreamUnavailable) as first:
        await source.token()
    clock.advance(3)
    with pytest.raises(UpstreamUnavailable) as second:
        await source.token()

    assert (first.value.retry_after, second.value.retry_after) == (7, 4)
    assert len(issuer.token_requests) == 1  # no request while the provider asked us to wait

    issuer.token_endpoint.failure_status = None
    clock.advance(4)
    assert await source.token()


async def test_unreachable_provider_is_upstream_unavailable(http_client: httpx.AsyncClient) -> None:
    source = ClientCredentialsTokenSource(
        http_client,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        audience="parley-api",
        token_endpoint=f"http://127.0.0.1:{free_port()}/token",
    )

    with pytest.raises(UpstreamUnavailable) as caught:
        await source.token()
    assert caught.value.retry_after >= 1


async def test_current_token_is_used_while_renewal_fails_until_it_expires(
    issuer: LocalIssuer, source: ClientCredentialsTokenSource, clock: ManualClock
) -> None:
    issuer.token_endpoint.lifetime_seconds = 100
    token = await source.token()
    issuer.token_endpoint.failure_status = 500

    clock.advance(75)  # due for renewal, still valid
    assert await source.token() == token
    clock.advance(21)  # within 5 s of expiry: no longer handed out
    with pytest.raises(UpstreamUnavailable):
        await source.token()


@pytest.mark.parametrize(
    "body",
    [
        {"token_type": "Bearer", "expires_in": 300},
        {"access_token": "abc", "token_type": "DPoP", "expires_in": 300},
        {"access_token": "abc", "token_type": "Bearer", "expires_in": 2},
        {"access_token": "abc", "token_type": "Bearer", "expires_in": "soon"},
    ],
)
async def test_unusable_token_responses_are_upstream_unavailable(body: dict[str, object]) -> None:
    # A real provider never answers like this; a mock transport can.
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))
    async with httpx.AsyncClient(transport=transport) as client:
        source = ClientCredentialsTokenSource(
            client,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            audience="parley-api",
            token_endpoint="https://op.example/token",
        )
        with pytest.raises(UpstreamUnavailable):
            await source.token()


async def test_expires_in_sent_as_a_string_is_understood() -> None:
    # Entra ID's v1 endpoint sends expires_in as a string.
    body = {"access_token": "abc", "token_type": "bearer", "expires_in": "3599"}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))
    async with httpx.AsyncClient(transport=transport) as client:
        source = ClientCredentialsTokenSource(
            client,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            audience="parley-api",
            token_endpoint="https://op.example/token",
        )
        assert await source.token() == "abc"


@pytest.mark.parametrize(
    "endpoints", [{}, {"token_endpoint": "https://op/token", "issuer": "https://op"}]
)
def test_exactly_one_of_token_endpoint_or_issuer_is_required(
    http_client: httpx.AsyncClient, endpoints: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ClientCredentialsTokenSource(
            http_client,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            audience="parley-api",
            **endpoints,
        )
