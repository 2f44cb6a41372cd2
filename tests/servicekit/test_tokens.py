"""Access-token verification against a real OpenID issuer over HTTP (SECURITY-CHECKLIST "Access
tokens"): keys only from the JWKS, a fixed algorithm allowlist, exact claims, no ID tokens, a JWKS
endpoint that bursts of bogus kids cannot hammer, and principals that cannot be confused."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from servicekit.errors import InsufficientScope, Unauthorized, UpstreamUnavailable
from servicekit.tokens import AccessTokenVerifier, Principal, bearer_token_from_header
from tests.support.issuer import (
    IssuerHost,
    LocalIssuer,
    ManualClock,
    compact,
    running_issuer,
)

REFETCH_INTERVAL_SECONDS = 30.0
MAX_AGE_SECONDS = 600.0


@pytest.fixture
def issuer(issuer_host: IssuerHost) -> LocalIssuer:
    return issuer_host.fresh_issuer()


@pytest.fixture
def verifier(
    issuer: LocalIssuer, http_client: httpx.AsyncClient, clock: ManualClock
) -> AccessTokenVerifier:
    return AccessTokenVerifier(
        issuer.url,
        issuer.audience,
        http_client,
        jwks_refetch_interval_seconds=REFETCH_INTERVAL_SECONDS,
        jwks_max_age_seconds=MAX_AGE_SECONDS,
        clock=clock,
    )


async def rejection(verifier: AccessTokenVerifier, token: str) -> Unauthorized:
    with pytest.raises(Unauthorized) as caught:
        await verifier.verify(token)
    assert caught.value.instance_code == "invalid_token"
    assert caught.value.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    if token:
        assert token not in caught.value.detail
    return caught.value


async def test_valid_user_token_becomes_a_user_principal(
    issuer: LocalIssuer, verifier: AccessTokenVerifier
) -> None:
    principal = await verifier.verify(issuer.access_token(sub="alice-sub", scope="openid email"))

    assert principal.kind == "user"
    assert principal.id == "alice-sub"
    assert principal.issuer == issuer.url
    assert principal.client_id == "parley-bff"
    assert principal.scopes == {"openid", "email"}
    assert principal.claims["sub"] == "alice-sub"


# Signature: keys from the configured JWKS only, fixed algorithm allowlist ------------------------


@pytest.mark.parametrize(
    ("key_type", "alg"),
    [("RSA", "RS256"), ("RSA", "PS256"), ("EC", "ES256"), ("OKP", "EdDSA"), ("OKP", "Ed25519")],
)
async def test_each_allowed_algorithm_verifies(
    issuer: LocalIssuer, verifier: AccessTokenVerifier, key_type: Any, alg: str
) -> None:
    kid = issuer.add_key(key_type)
    token = issuer.access_token(kid=kid, header={"alg": alg}, sub="bob")

    assert (await verifier.verify(token)).subject == "bob"


async def test_token_signed_with_a_key_outside_the_jwks_is_rejected(
    issuer: LocalIssuer, verifier: AccessTokenVerifier
) -> None:
    unpublished = issuer.add_key("EC", publish=False)

    await rejection(verifier, issuer.access_token(kid=unpublished))
    # Same forgery, but naming a published kid: the signature cannot match.
    forged = issuer.access_token(kid=unpublished, header={"kid": issuer.signing_kid})
    assert "signature" in (await rejection(verifier, forged)).detail


async def test_tampered_claims_are_rejected(
    issuer: LocalIssuer, verifier: AccessTokenVerifier
) -> None:
    header, _, signature = issuer.access_token(sub="alice").split(".")
    other_claims = compact({}, issuer.claims(sub="mallory")).split(".")[1]

    await rejection(verifier, f"{header}.{other_claims}.{signature}")


async def test_alg_none_is_rejected(issuer: LocalIssuer, verifier: AccessTokenVerifier) -> None:
    detail = (await rejection(verifier, issuer.unsigned_token())).detail

    assert "algorithm" in detail
    assert issuer.jwks_fetches == 0


async def test_hs256_keyed_with_the_rsa_public_key_is_rejected(
    issuer: LocalIssuer, verifier: AccessTokenVerifier
) -> None:
    rsa_kid = issuer.add_key("RSA")

    await rejection(verifier, issuer.hmac_token_keyed_with_public_key(rsa_kid))


@pytest.mark.parametrize("algorithms", [("HS256",), ("RS256", "none"), ()])
def test_symmetric_or_no_algorithm_cannot_be_allowed(
    issuer: LocalIssuer, http_client: httpx.AsyncClient, algorithms: tuple[str, ...]
) -> None:
    with pytest.raises(ValueError, match="algorithms"):
        AccessTokenVerifier(issuer.url, issuer.audience, http_client, algorithms=algorithms)


async def test_embedded_jwk_header_is_ignored(
    issuer: LocalIssuer, verifier: AccessTokenVerifier
) -> None:
    attacker_kid = issuer.add_key("EC", publish=False)
    token = issuer.access_token(kid=attacker_kid, header={"jwk": issuer.public_jwk(attacker_kid)})

    assert "signing key is unknown" in (await rejection(verifier, token)).detail


async def test_jku_and_x5u_headers_are_never_followed(
    issuer: LocalIssuer, verifier: AccessTokenVerifier
) -> None:
    async with running_issuer() as attacker:
        # Signed with the attacker's key, which only the attacker's JWKS publishes.
        token = attacker.sign(
            issuer.claims(),
            header={"jku": attacker.jwks_uri, "x5u": f"{attacker.url}/cert.pem"},
        )

        await rejection(verifier, token)
        assert sum(attacker.requests.values()) == 0


async def test_token_without_kid_uses_the_only_key(
    issuer: LocalIssuer, verifier: AccessTokenVerifier
) -> None:
    token = issuer.access_token(header={"kid": None}, sub="carol")

    assert (await verifier.verify(token)).subject == "carol"


async def test_token_without_kid_is_rejected_when_several_keys_fit(
    issuer: LocalIssuer, verifier: AccessTokenVerifier
) -> None:
    issuer.add_key("EC")

    await rejection(verifier, issuer.access_token(header={"kid": None}))


# JWKS caching, rotation and throttling ------------------------------------------------------------


async def test_keys_are_fetched_once_and_cached(
    issuer: LocalIssuer, verifier: AccessTokenVerifier
) -> None:
    for _ in range(5):
        await verifier.verify(issuer.access_token())

    assert (issuer.discovery_fetches, issuer.jwks_fetches) == (1, 1)


async def test_burst_of_random_kids_on_a_cold_cache_fetches_the_jwks_once(
    issuer: LocalIssuer, verifier: AccessTokenVerifier
) -> None:
    tokens = [issuer.access_token(header={"kid": uuid.uuid4().hex}) for _ in range(100)]

    results = await asyncio.gather(*(verifier.verify(t) for t in tokens), return_exceptions=True)

    assert all(isinstance(result, Unauthorized) for result in results)
    assert issuer.jwks_fetches == 1


async def test_burst_of_random_kids_refetches_the_jwks_at_most_once_per_interval(
    issuer: LocalIssuer, verifier: AccessTokenVerifier, clock: ManualClock
) -> None:
    await verifier.verify(issuer.access_token())
    clock.advance(REFETCH_INTERVAL_SECONDS)  # a re-fetch is allowed again
    tokens = [issuer.access_token(header={"kid": uuid.uuid4().hex}) for _ in range(100)]

    results = await asyncio.gather(*(verifier.verify(t) for t in tokens), return_exceptions=True)
    for token in tokens[:20]:  # and one after another, still within the interval
        await rejection(verifier, token)

    assert all(isinstance(result, Unauthorized) for result in results)
    assert issuer.jwks_fetches == 2


async def test_rotated_key_is_followed_after_a_refetch(
    issuer: LocalIssuer, verifier: AccessTokenVerifier, clock: ManualClock
) -> None:
    await verifier.verify(issuer.access_token())
    new_kid = issuer.rotate_key("RSA")
    clock.advance(REFETCH_INTERVAL_SECONDS)

    principal = await verifier.verify(issuer.access_token(sub="dave"))

    assert principal.subject == "dave"
    assert issuer.jwks_fetches == 2
    assert issuer.signing_kid == new_kid


async def test_unknown_kid_within_the_refetch_interval_does_not_refetch(
    issuer: LocalIssuer, verifier: AccessTokenVerifier, clock: ManualClock
) -> None:
    await verifier.verify(issuer.access_token())
    issuer.rotate_key()
    clock.advance(REFETCH_INTERVAL_SECONDS - 1)

    await rejection(verifier, issuer.access_token())
    assert issuer.jwks_fetches == 1


async def test_removed_key_stops_verifying_once_the_cache_expires(
    issuer: LocalIssuer, verifier: AccessTokenVerifier, clock: ManualClock
) -> None:
    old_kid = issuer.signing_kid
    await verifier.verify(issuer.access_token())
    issuer.rotate_key()
    issuer.unpublish_key(old_kid)
    clock.advance(MAX_AGE_SECONDS)

    await rejection(verifier, issuer.access_token(kid=old_kid))
    assert (await verifier.verify(issuer.access_token())).kind == "user"
    assert issuer.jwks_fetches == 2


async def test_cached_keys_keep_working_while_the_jwks_endpoint_fails(
    issuer: LocalIssuer, verifier: AccessTokenVerifier, clock: ManualClock
) -> None:
    await verifier.verify(issuer.access_token())
    issuer.jwks_failure_status = 500
    clock.advance(MAX_AGE_SECONDS)

    assert (await verifier.verify(issuer.access_token(sub="erin"))).subject == "erin"
    assert (await verifier.verify(issuer.access_token(sub="erin"))).subject == "erin"
    assert issuer.jwks_fetches == 2  # the failed refresh is not retried on every request


async def test_unavailable_jwks_without_cached_keys_is_a_503_until_it_recovers(
    issuer: LocalIssuer, verifier: AccessTokenVerifier, clock: ManualClock
) -> None:
    issuer.jwks_failure_status = 503
    with pytest.raises(UpstreamUnavailable):
        await verifier.verify(issuer.access_token())
    issuer.jwks_failure_status = None
    with pytest.raises(UpstreamUnavailable) as throttled:
        await verifier.verify(issuer.access_token())
    assert throttled.value.retry_after >= 1
    assert issuer.jwks_fetches == 1

    clock.advance(2)
    assert (await verifier.verify(issuer.access_token(sub="frank"))).subject == "frank"


async def test_discovery_document_for_another_issuer_is_refused(
    issuer: LocalIssuer, verifier: AccessTokenVerifier
) -> None:
    issuer.advertised_issuer = issuer.url + "/"

    with pytest.raises(UpstreamUnavailable, match="another issuer"):
        await verifier.verify(issuer.access_token())
    assert issuer.jwks_fetches == 0


# Claims ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SecondsFromNow:
    """A timestamp claim relative to when the test runs, not to when it was collected."""

    seconds: int


def at_run_time(claims: dict[str, Any]) -> dict[str, Any]:
    return {
        name: int(time.time()) + value.seconds if isinstance(value, SecondsFromNow) else value
        for name, value in claims.items()
    }


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"iss": "https://evil.example"}, id="foreign-issuer"),
        pytest.param({"iss": None}, id="no-issuer"),
        pytest.param({"aud": "another-api"}, id="foreign-audience"),
        pytest.param({"aud": ["another-api", "parley-bff"]}, id="audience-list-without-ours"),
        pytest.param({"aud": None}, id="no-audience"),
        pytest.param({"exp": None}, id="no-expiry"),
        pytest.param({"exp": SecondsFromNow(-61)}, id="expired-beyond-leeway"),
        pytest.param({"nbf": SecondsFromNow(120)}, id="not-yet-valid"),
        pytest.param({"iat": SecondsFromNow(120)}, id="issued-in-the-future"),
        pytest.param({"sub": None}, id="no-subject"),
        pytest.param({"sub": ""}, id="empty-subject"),
        pytest.param({"exp": "tomorrow"}, id="non-numeric-expiry"),
    ],
)
async def test_invalid_claims_are_rejected(
    issuer: LocalIssuer, verifier: AccessTokenVerifier, claims: dict[str, Any]
) -> None:
    await rejection(verifier, issuer.access_token(**at_run_time(claims)))


async def test_issuer_must_match_exactly(
    issuer: LocalIssuer, verifier: AccessTokenVerifier
) -> None:
    await rejection(verifier, issuer.access_token(iss=issuer.url + "/"))


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"aud": ["another-api", "parley-api"]}, id="audience-list-with-ours"),
        pytest.param({"exp": SecondsFromNow(-30)}, id="expired-within-leeway"),
        pytest.param({"nbf": SecondsFromNow(30)}, id="valid-soon-within-leeway"),
        pytest.param({"iat": SecondsFromNow(30)}, id="issued-slightly-ahead"),
    ],
)
async def test_claims_within_bounds_are_accepted(
    issuer: LocalIssuer, verifier: AccessTokenVerifier, claims: dict[str, Any]
) -> None:
    principal = await verifier.verify(issuer.access_token(sub="gina", **at_run_time(claims)))
    assert principal.subject == "gina"


def test_leeway_beyond_60_seconds_is_refused(
    issuer: LocalIssuer, http_client: httpx.AsyncClient
) -> None:
    with pytest.raises(ValueError, match="leeway"):
        AccessTokenVerifier(issuer.url, issuer.audience, http_client, leeway_seconds=61)


# Token types: access tokens only -----------------------------------------------------------------


@pytest.mark.parametrize("typ", ["at+jwt", "application/at+jwt", "AT+JWT", "JWT", None])
async def test_access_token_types_are_accepted(
    issuer: LocalIssuer, verifier: AccessTokenVerifier, typ: str | None
) -> None:
    token = issuer.access_token(header={"typ": typ}, sub="hana")

    assert (await verifier.verify(token)).subject == "hana"


@pytest.mark.parametrize("typ", ["logout+jwt", "dpop+jwt", "secevent+jwt", "JOSE"])
async def test_other_token_types_are_rejected(
    issuer: LocalIssuer, verifier: AccessTokenVerifier, typ: str
) -> None:
    await rejection(verifier, issuer.access_token(header={"typ": typ}))


async def test_id_token_for_the_bff_is_not_an_access_token(
    issuer: LocalIssuer, verifier: AccessTokenVerifier
) -> None:
    id_token = issuer.access_token(
        header={"typ": "JWT"}, aud="parley-bff", nonce="n-0S6", at_hash="77QmUPtjPfzWtF2AnpK9RQ"
    )

    await rejection(verifier, id_token)


async def test_id_token_listing_the_api_audience_is_still_not_an_access_token(
    issuer: LocalIssuer, verifier: AccessTokenVerifier
) -> None:
    for marker in ({"nonce": "n-0S6"}, {"at_hash": "77QmUPtjPfzWtF2AnpK9RQ"}, {"c_hash": "LDkt"}):
        id_token = issuer.access_token(
            header={"typ": "JWT"}, aud=["parley-bff", "parley-api"], **marker
        )
        assert "ID token" in (await rejection(verifier, id_token)).detail


async def test_keycloak_tokens_are_told_apart_by_their_typ_claim(
    issuer: LocalIssuer, verifier: AccessTokenVerifier
) -> None:
    # Keycloak before 24 copies the nonce into access tokens but marks each token's kind.
    access = issuer.access_token(header={"typ": "JWT"}, typ="Bearer", nonce="n-0S6", sub="ivan")
    identity = issuer.access_token(header={"typ": "JWT"}, typ="ID", nonce="n-0S6")

    assert (await verifier.verify(access)).subject == "ivan"
    await rejection(verifier, identity)


# Principals: users and machine clients -----------------------------------------------------------

MACHINE_TOKENS_BY_PROVIDER: dict[str, dict[str, Any]] = {
    "embedded": {"sub": "reports-bot", "client_id": "reports-bot", "scope": "chat.read"},
    "auth0": {
        "sub": "reports-bot@clients",
        "azp": "reports-bot",
        "client_id": None,
        "gty": "client-credentials",
        "scope": "chat.read",
    },
    "entra": {
        "sub": "8f7c1e2a-0000-4000-8000-000000000001",
        "azp": "reports-bot",
        "client_id": None,
        "idtyp": "app",
        "scope": None,
        "roles": ["chat.read"],
    },
    "keycloak": {
        "sub": "4b1e0c5e-0000-4000-8000-000000000002",
        "azp": "reports-bot",
        "client_id": "reports-bot",
        "preferred_username": "service-account-reports-bot",
        "scope": "chat.read",
    },
}


@pytest.mark.parametrize("provider", MACHINE_TOKENS_BY_PROVIDER)
async def test_client_credentials_tokens_become_machine_principals(
    issuer: LocalIssuer, verifier: AccessTokenVerifier, provider: str
) -> None:
    claims = {"sid": None, **MACHINE_TOKENS_BY_PROVIDER[provider]}

    principal = await verifier.verify(issuer.access_token(**claims))

    assert principal.kind == "machine"
    assert principal.client_id == "reports-bot"
    assert principal.id == f"machine:{claims['sub']}"
    assert principal.scopes == {"chat.read"}


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"sub": "auth0|65f0", "azp": "parley-spa", "client_id": None}, id="auth0"),
        pytest.param({"sub": "u-1", "preferred_username": "alice"}, id="keycloak"),
        pytest.param({"sub": "u-2", "idtyp": "user", "roles": ["chat.admin"]}, id="entra"),
    ],
)
async def test_user_tokens_become_user_principals(
    issuer: LocalIssuer, verifier: AccessTokenVerifier, claims: dict[str, Any]
) -> None:
    principal = await verifier.verify(issuer.access_token(**claims))

    assert principal.kind == "user"
    assert principal.id == claims["sub"]
    assert "chat.admin" not in principal.scopes  # user app roles are not scopes


async def test_machine_client_acts_only_within_its_scopes(
    issuer: LocalIssuer, verifier: AccessTokenVerifier
) -> None:
    principal = await verifier.verify(issuer.machine_token("reports-bot", scope="chat.read"))

    principal.require_scope("chat.read")
    with pytest.raises(InsufficientScope) as caught:
        principal.require_scope("chat.write")
    assert caught.value.status == 403
    assert 'scope="chat.write"' in caught.value.headers["WWW-Authenticate"]


async def test_users_are_governed_by_membership_not_scopes(
    issuer: LocalIssuer, verifier: AccessTokenVerifier
) -> None:
    principal = await verifier.verify(issuer.access_token(scope="openid profile"))

    principal.require_scope("chat.write")


async def test_client_id_equal_to_a_user_sub_is_a_different_principal(
    issuer: LocalIssuer, verifier: AccessTokenVerifier
) -> None:
    user = await verifier.verify(issuer.access_token(sub="reports-bot"))
    machine = await verifier.verify(issuer.machine_token("reports-bot"))

    assert user.id != machine.id
    assert (user.kind, machine.kind) == ("user", "machine")
    assert user != machine


async def test_user_sub_shaped_like_a_machine_id_is_rejected(
    issuer: LocalIssuer, verifier: AccessTokenVerifier
) -> None:
    await rejection(verifier, issuer.access_token(sub="machine:reports-bot"))


def test_principal_is_immutable() -> None:
    principal = Principal("https://op", "s", "user", None, frozenset(), {"sub": "s"})

    with pytest.raises(AttributeError):
        principal.kind = "machine"  # type: ignore[misc]


# Malformed input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-jwt",
        "a.b.c",
        "eyJhbGciOiJSUzI1NiJ9.e30",
        "eyJhbGciOiJSUzI1NiJ9.e30.c2ln.ZXh0cmE.dGFn",
        "héllo.wörld.sig",
        "eyJhbGciOiJSUzI1NiJ9.WzFd.c2ln",  # payload is a JSON array
        "W10.e30.c2ln",  # header is a JSON array
        "e30.e30.c2ln",  # header without alg
    ],
)
async def test_malformed_tokens_are_rejected(
    issuer: LocalIssuer, verifier: AccessTokenVerifier, token: str
) -> None:
    await rejection(verifier, token)
    assert issuer.jwks_fetches == 0


async def test_non_string_kid_is_rejected_without_fetching_keys(
    issuer: LocalIssuer, verifier: AccessTokenVerifier
) -> None:
    token = compact({"alg": "ES256", "typ": "at+jwt", "kid": 7}, issuer.claims(), b"signature")

    await rejection(verifier, token)
    assert issuer.jwks_fetches == 0


@pytest.mark.parametrize(
    ("header", "expected"),
    [("Bearer abc.def.ghi", "abc.def.ghi"), ("bearer  tok", "tok"), ("BEARER tok ", "tok")],
)
def test_bearer_token_is_read_from_the_authorization_header(header: str, expected: str) -> None:
    assert bearer_token_from_header(header) == expected


@pytest.mark.parametrize(
    "header", [None, "", "Basic dXNlcjpwdw==", "Bearer", "Bearer a b", "Token x"]
)
def test_missing_or_malformed_authorization_header_is_unauthorized(header: str | None) -> None:
    with pytest.raises(Unauthorized) as caught:
        bearer_token_from_header(header)
    assert caught.value.status == 401
    assert caught.value.headers["WWW-Authenticate"].startswith("Bearer")
