"""The node-oidc-provider harness works end to end, and Parley's token verifier accepts its tokens.

A plain httpx relying party stands in for the BFF here; the BFF's own tests use the same harness.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from servicekit.tokens import AccessTokenVerifier
from tests.support.node_provider import (
    NodeProvider,
    client_credentials_token,
    jwt_parts,
    machine_client,
    pkce_pair,
    running_node_provider,
    sign_in,
    sign_out,
    web_client,
)
from tests.support.servers import free_port, serve_in_loop

pytestmark = pytest.mark.slow

AUDIENCE = "https://api.parley.test"
RP = "http://127.0.0.1:8000"
REDIRECT_URI = RP + "/bff/callback"
POST_LOGOUT_URI = RP + "/"
SCOPE = "openid profile email offline_access chat.read chat.write"
ACCOUNTS = {
    "alice": {
        "sub": "0b5d6c1e-alice",
        "name": "Alice Liddell",
        "email": "alice@example.test",
        "email_verified": True,
        "preferred_username": "alice",
    },
    "bob": {"name": "Bob", "email": "bob@example.test", "email_verified": False},
}
BACKCHANNEL_PORT = free_port()
CLIENTS = [
    web_client(
        "parley-bff",
        "bff-secret",
        REDIRECT_URI,
        post_logout_redirect_uri=POST_LOGOUT_URI,
        backchannel_logout_uri=f"http://127.0.0.1:{BACKCHANNEL_PORT}/bff/backchannel-logout",
    ),
    web_client("third-party", "tp-secret", RP + "/tp/callback", first_party=False),
    web_client(
        "posting-app", "post-secret", RP + "/post/callback", auth_method="client_secret_post"
    ),
    machine_client("reader-bot", "bot-secret", scope="chat.read"),
]


@pytest.fixture(scope="module")
def provider() -> Iterator[NodeProvider]:
    with running_node_provider(clients=CLIENTS, accounts=ACCOUNTS, audience=AUDIENCE) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def authorize_url(
    provider: NodeProvider, client_id: str, redirect_uri: str, **extra: str
) -> tuple[str, dict[str, str]]:
    """An RP's authorize URL and the state, nonce and code verifier it keeps."""
    verifier, challenge = pkce_pair()
    kept = {"state": secrets.token_urlsafe(16), "nonce": secrets.token_urlsafe(16)}
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": SCOPE,
        "state": kept["state"],
        "nonce": kept["nonce"],
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "resource": AUDIENCE,
    } | extra
    return provider.authorization_endpoint + "?" + urlencode(params), kept | {"verifier": verifier}


def callback_params(response: httpx.Response, redirect_uri: str) -> dict[str, str]:
    location = response.headers["location"]
    assert location.startswith(redirect_uri + "?"), location
    return {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}


async def sign_in_and_redeem(
    provider: NodeProvider, browser: httpx.AsyncClient, login: str = "alice"
) -> tuple[dict[str, Any], dict[str, str]]:
    url, kept = authorize_url(provider, "parley-bff", REDIRECT_URI)
    callback = callback_params(await sign_in(browser, url, login=login), REDIRECT_URI)
    assert callback["state"] == kept["state"]
    assert callback["iss"] == provider.issuer  # RFC 9207
    response = await browser.post(
        provider.token_endpoint,
        auth=("parley-bff", "bff-secret"),
        data={
            "grant_type": "authorization_code",
            "code": callback["code"],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": kept["verifier"],
            "resource": AUDIENCE,
        },
    )
    assert response.status_code == 200, response.text
    return response.json(), kept


async def verified_id_token(provider: NodeProvider, token: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        keys = KeySet.import_key_set((await client.get(provider.jwks_uri)).json())
    claims: dict[str, Any] = jwt.decode(token, keys, algorithms=["RS256"]).claims
    return claims


async def refresh(
    http: httpx.AsyncClient, provider: NodeProvider, refresh_token: str
) -> httpx.Response:
    return await http.post(
        provider.token_endpoint,
        auth=("parley-bff", "bff-secret"),
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
    )


async def test_authorization_code_flow_gives_tokens_parley_accepts(
    provider: NodeProvider, http: httpx.AsyncClient
) -> None:
    tokens, kept = await sign_in_and_redeem(provider, http)

    id_token = await verified_id_token(provider, tokens["id_token"])
    assert id_token["iss"] == provider.issuer
    assert id_token["aud"] == "parley-bff"
    assert id_token["nonce"] == kept["nonce"]
    assert id_token["sub"] == "0b5d6c1e-alice"
    assert id_token["name"] == "Alice Liddell"
    assert id_token["email"] == "alice@example.test"
    assert id_token["preferred_username"] == "alice"
    assert "sid" in id_token

    header, claims = jwt_parts(tokens["access_token"])
    assert header["typ"] == "at+jwt"
    assert claims["aud"] == AUDIENCE
    assert claims["sub"] == "0b5d6c1e-alice"
    assert set(claims["scope"].split()) == {"chat.read", "chat.write"}
    assert tokens["refresh_token"]

    verifier = AccessTokenVerifier(provider.issuer, AUDIENCE, http)
    principal = await verifier.verify(tokens["access_token"])
    assert (principal.kind, principal.id, principal.client_id) == (
        "user",
        "0b5d6c1e-alice",
        "parley-bff",
    )


async def test_refresh_tokens_rotate_and_the_old_one_dies(
    provider: NodeProvider, http: httpx.AsyncClient
) -> None:
    tokens, _ = await sign_in_and_redeem(provider, http)

    response = await refresh(http, provider, tokens["refresh_token"])
    assert response.status_code == 200, response.text
    refreshed = response.json()
    assert refreshed["refresh_token"] != tokens["refresh_token"]
    _, claims = jwt_parts(refreshed["access_token"])
    assert claims["aud"] == AUDIENCE  # no `resource` sent: the granted one is used
    principal = await AccessTokenVerifier(provider.issuer, AUDIENCE, http).verify(
        refreshed["access_token"]
    )
    assert principal.kind == "user"

    reused = await refresh(http, provider, tokens["refresh_token"])
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"


async def test_revoked_refresh_token_is_inactive(
    provider: NodeProvider, http: httpx.AsyncClient
) -> None:
    tokens, _ = await sign_in_and_redeem(provider, http)
    auth = ("parley-bff", "bff-secret")
    body = {"token": tokens["refresh_token"], "token_type_hint": "refresh_token"}

    introspected = await http.post(provider.introspection_endpoint, auth=auth, data=body)
    assert introspected.json()["active"] is True
    revoked = await http.post(provider.revocation_endpoint, auth=auth, data=body)
    assert revoked.status_code == 200, revoked.text

    introspected = await http.post(provider.introspection_endpoint, auth=auth, data=body)
    assert introspected.json() == {"active": False}
    assert (await refresh(http, provider, tokens["refresh_token"])).status_code == 400


async def test_client_credentials_give_machine_tokens(
    provider: NodeProvider, http: httpx.AsyncClient
) -> None:
    token = await client_credentials_token(
        provider, "reader-bot", "bot-secret", "chat.read", AUDIENCE
    )
    header, claims = jwt_parts(token)
    assert header["typ"] == "at+jwt"
    assert (claims["aud"], claims["scope"]) == (AUDIENCE, "chat.read")

    principal = await AccessTokenVerifier(provider.issuer, AUDIENCE, http).verify(token)
    assert (principal.kind, principal.id, principal.scopes) == (
        "machine",
        "machine:reader-bot",
        frozenset({"chat.read"}),
    )

    beyond_its_scope = await http.post(
        provider.token_endpoint,
        auth=("reader-bot", "bot-secret"),
        data={"grant_type": "client_credentials", "scope": "chat.write", "resource": AUDIENCE},
    )
    assert beyond_its_scope.json()["error"] == "invalid_scope"


async def test_audience_parameter_stands_in_for_resource(
    provider: NodeProvider, http: httpx.AsyncClient
) -> None:
    response = await http.post(
        provider.token_endpoint,
        auth=("parley-bff", "bff-secret"),
        data={"grant_type": "client_credentials", "scope": "chat.write", "audience": AUDIENCE},
    )
    assert response.status_code == 200, response.text
    _, claims = jwt_parts(response.json()["access_token"])
    assert (claims["aud"], claims["sub"]) == (AUDIENCE, "parley-bff")


async def test_client_secret_post_and_a_sub_defaulting_to_the_login(
    provider: NodeProvider, http: httpx.AsyncClient
) -> None:
    redirect_uri = RP + "/post/callback"
    url, kept = authorize_url(provider, "posting-app", redirect_uri)
    callback = callback_params(await sign_in(http, url, login="bob"), redirect_uri)
    response = await http.post(
        provider.token_endpoint,
        data={
            "grant_type": "authorization_code",
            "code": callback["code"],
            "redirect_uri": redirect_uri,
            "code_verifier": kept["verifier"],
            "client_id": "posting-app",
            "client_secret": "post-secret",
        },
    )
    assert response.status_code == 200, response.text
    _, claims = jwt_parts(response.json()["access_token"])
    assert (claims["sub"], claims["aud"]) == ("bob", AUDIENCE)


async def test_third_party_client_passes_the_consent_page(
    provider: NodeProvider, http: httpx.AsyncClient
) -> None:
    redirect_uri = RP + "/tp/callback"
    url, kept = authorize_url(provider, "third-party", redirect_uri)
    callback = callback_params(await sign_in(http, url, login="alice"), redirect_uri)
    assert callback["state"] == kept["state"]
    assert "code" in callback


async def test_pkce_is_required(provider: NodeProvider, http: httpx.AsyncClient) -> None:
    url, _ = authorize_url(provider, "parley-bff", REDIRECT_URI)
    without_pkce = url.replace("code_challenge=", "ignored=")
    response = await http.get(without_pkce)
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI)
    assert "error=invalid_request" in location


async def test_unknown_login_comes_back_as_access_denied(
    provider: NodeProvider, http: httpx.AsyncClient
) -> None:
    url, kept = authorize_url(provider, "parley-bff", REDIRECT_URI)
    callback = callback_params(await sign_in(http, url, login="mallory"), REDIRECT_URI)
    assert callback["error"] == "access_denied"
    assert callback["state"] == kept["state"]


async def test_logout_sends_a_backchannel_logout_token(
    provider: NodeProvider, http: httpx.AsyncClient
) -> None:
    received: list[str] = []

    async def backchannel_logout(request: Request) -> Response:
        received.append(str((await request.form())["logout_token"]))
        return Response(status_code=200)

    app = Starlette(routes=[Route("/bff/backchannel-logout", backchannel_logout, methods=["POST"])])
    async with serve_in_loop(app, BACKCHANNEL_PORT):
        tokens, _ = await sign_in_and_redeem(provider, http)
        id_token = await verified_id_token(provider, tokens["id_token"])
        end_session = (
            provider.end_session_endpoint
            + "?"
            + urlencode(
                {
                    "id_token_hint": tokens["id_token"],
                    "post_logout_redirect_uri": POST_LOGOUT_URI,
                    "state": "bye",
                }
            )
        )
        response = await sign_out(http, end_session)

    assert response.headers["location"] == POST_LOGOUT_URI + "?state=bye"
    assert len(received) == 1, provider.output()
    header, logout = jwt_parts(received[0])
    assert header["typ"] == "logout+jwt"
    assert logout["aud"] == "parley-bff"
    assert logout["sub"] == id_token["sub"]
    assert logout["sid"] == id_token["sid"]
    assert "http://schemas.openid.net/event/backchannel-logout" in logout["events"]
    assert (await refresh(http, provider, tokens["refresh_token"])).status_code == 400
