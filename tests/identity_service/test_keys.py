"""Signing keys: published in the JWKS, kept across restarts, rotated without breaking tokens."""

from __future__ import annotations

import httpx
from sqlalchemy import text

from identity_service.admin import rotate_signing_key
from servicekit.db import Database
from servicekit.tokens import AccessTokenVerifier
from tests.identity_service.conftest import ServerStarter
from tests.identity_service.support import (
    IdentityFactory,
    IdentityServer,
    client_credentials,
    header_of,
)


async def published_kids(http: httpx.AsyncClient, identity: IdentityServer) -> list[str]:
    response = await http.get(f"{identity.url}/jwks")
    assert response.status_code == 200
    return [key["kid"] for key in response.json()["keys"]]


async def machine_token(
    http: httpx.AsyncClient, identity: IdentityServer, factory: IdentityFactory
) -> str:
    response = await client_credentials(http, identity, await factory.machine_client())
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def test_discovery_and_jwks_describe_an_rs256_provider(
    identity: IdentityServer, http: httpx.AsyncClient
) -> None:
    discovery = (await http.get(f"{identity.url}/.well-known/openid-configuration")).json()
    jwks = (await http.get(discovery["jwks_uri"])).json()

    assert discovery["issuer"] == identity.url
    for endpoint in (
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "revocation_endpoint",
        "end_session_endpoint",
        "jwks_uri",
    ):
        assert discovery[endpoint].startswith(identity.url + "/"), endpoint
    assert discovery["code_challenge_methods_supported"] == ["S256"]
    assert discovery["id_token_signing_alg_values_supported"] == ["RS256"]
    assert discovery["backchannel_logout_supported"] is True
    assert set(discovery["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
    }
    assert jwks["keys"]
    for key in jwks["keys"]:
        assert (key["kty"], key["alg"], key["use"]) == ("RSA", "RS256", "sig")
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key), "private parts published"


async def test_rotation_signs_with_the_new_key_and_publishes_the_old_until_its_tokens_expire(
    identity: IdentityServer,
    factory: IdentityFactory,
    http: httpx.AsyncClient,
    database_url: str,
    database: Database,
) -> None:
    before = await machine_token(http, identity, factory)
    old_kid = header_of(before)["kid"]

    new_kid = await rotate_signing_key(database_url)
    after = await machine_token(http, identity, factory)

    assert new_kid != old_kid
    assert header_of(after)["kid"] == new_kid
    assert {old_kid, new_kid} <= set(await published_kids(http, identity))
    async with httpx.AsyncClient() as verifier_http:
        verifier = AccessTokenVerifier(identity.url, identity.audience, verifier_http)
        assert (await verifier.verify(before)).kind == "machine"
        assert (await verifier.verify(after)).kind == "machine"

    # Once every token the old key signed has expired, it is no longer published.
    await database.transaction(
        lambda connection: connection.execute(
            text(
                "UPDATE identity.signing_keys SET retired_at = retired_at - interval '1 hour'"
                " WHERE kid = :kid"
            ),
            {"kid": old_kid},
        )
    )
    kids = await published_kids(http, identity)
    assert old_kid not in kids
    assert new_kid in kids


async def test_keys_survive_a_restart(
    identity: IdentityServer,
    factory: IdentityFactory,
    http: httpx.AsyncClient,
    start_identity_server: ServerStarter,
) -> None:
    token = await machine_token(http, identity, factory)

    async with start_identity_server() as restarted:
        kids = await published_kids(http, restarted)
        assert header_of(token)["kid"] in kids
        assert (
            header_of(await machine_token(http, restarted, factory))["kid"]
            == header_of(token)["kid"]
        )
