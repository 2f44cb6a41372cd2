"""The BFF as a relying party, against the OpenID conformance suite's misbehaving provider cases.

Each refused ID token is one defect away from a token the same test flow accepts (the positive
cases first), so a refusal here can only come from the check under test.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.bff.conftest import Browser, isolated_bff, open_browser
from tests.bff.scripted_provider import CLIENT_ID, Forgery, ScriptedProvider
from tests.support.issuer import KeyType

UNKNOWN_KEY = "signing key is not published"


async def assert_sign_in_refused(
    browser: Browser, caplog: pytest.LogCaptureFixture, because: str
) -> None:
    """Signing in fails with a clean page, for the reason ``because`` (in the BFF's log)."""
    caplog.clear()
    callback = await browser.sign_in()
    assert callback.status_code == 400, callback.text
    assert callback.headers["content-type"].startswith("text/html")
    assert browser.session_cookie() is None
    assert (await browser.user()).status_code == 401
    reasons = [getattr(r, "reason", "") for r in caplog.records if r.name == "bff.auth_routes"]
    assert len(reasons) == 1, reasons
    assert because in reasons[0]


async def assert_sign_in_accepted(browser: Browser) -> None:
    callback = await browser.sign_in()
    assert callback.status_code == 302, callback.text
    assert (await browser.user()).status_code == 200


@pytest.fixture(scope="module", autouse=True)
def keys_of_every_type(module_provider: ScriptedProvider) -> None:
    """RSA and Ed25519 keys beside the EC one, published before the BFF first reads the JWKS."""
    for key_type in ("RSA", "OKP"):
        module_provider.add_key(key_type)


def use_key(provider: ScriptedProvider, key_type: KeyType) -> None:
    """Sign from now on with the module provider's published key of ``key_type``."""
    provider.signing_kid = next(
        kid for kid in provider.published if provider.keys[kid].key_type == key_type
    )


@pytest.mark.parametrize(
    ("key_type", "header"),
    [
        pytest.param("EC", {}, id="ES256"),
        pytest.param("RSA", {}, id="RS256"),
        pytest.param("RSA", {"alg": "PS256"}, id="PS256"),
        pytest.param("OKP", {}, id="EdDSA"),
    ],
)
async def test_id_token_signed_with_an_allowed_algorithm_is_accepted(
    browser: Browser, provider: ScriptedProvider, key_type: KeyType, header: dict[str, Any]
) -> None:
    use_key(provider, key_type)
    provider.behaviour.id_token_header = header

    await assert_sign_in_accepted(browser)


@pytest.mark.parametrize(
    ("key_type", "forgery", "because"),
    [
        pytest.param("RSA", "bad_signature", "signature is invalid", id="RS256-bad-signature"),
        pytest.param("EC", "bad_signature", "signature is invalid", id="ES256-bad-signature"),
        pytest.param("OKP", "bad_signature", "signature is invalid", id="EdDSA-bad-signature"),
        pytest.param(
            "RSA", "hs256_public_key", "'HS256' is not accepted", id="HS256-keyed-with-public-key"
        ),
        pytest.param("EC", "alg_none", "'none' is not accepted", id="alg-none"),
    ],
)
async def test_id_token_with_a_forged_signature_is_refused(
    browser: Browser,
    provider: ScriptedProvider,
    caplog: pytest.LogCaptureFixture,
    key_type: KeyType,
    forgery: Forgery,
    because: str,
) -> None:
    use_key(provider, key_type)
    provider.behaviour.id_token_forgery = forgery

    await assert_sign_in_refused(browser, caplog, because)


@pytest.mark.parametrize(
    ("claims", "because"),
    [
        pytest.param({"iss": "https://evil.example"}, "iss", id="wrong-iss"),
        pytest.param({"aud": "another-client"}, "aud", id="wrong-aud"),
        pytest.param({"aud": None}, "aud", id="missing-aud"),
        pytest.param({"aud": [CLIENT_ID, "another"]}, "azp", id="several-aud-without-azp"),
        pytest.param({"azp": "another-client"}, "azp", id="wrong-azp"),
        pytest.param({"sub": None}, "sub", id="missing-sub"),
        pytest.param({"sub": ""}, "sub", id="empty-sub"),
        pytest.param({"iat": None}, "iat", id="missing-iat"),
        pytest.param({"iat": "yesterday"}, "iat", id="malformed-iat"),
        pytest.param({"exp": None}, "exp", id="missing-exp"),
        pytest.param({"exp": int(time.time()) - 3600}, "expired", id="expired"),
        pytest.param({"nonce": "not-the-login-nonce"}, "nonce", id="wrong-nonce"),
        pytest.param({"nonce": None}, "nonce", id="missing-nonce"),
    ],
)
async def test_id_token_with_wrong_claims_is_refused(
    browser: Browser,
    provider: ScriptedProvider,
    caplog: pytest.LogCaptureFixture,
    claims: dict[str, Any],
    because: str,
) -> None:
    provider.behaviour.id_token_claims = claims

    await assert_sign_in_refused(browser, caplog, because)


async def test_id_token_with_several_audiences_and_our_azp_is_accepted(
    browser: Browser, provider: ScriptedProvider
) -> None:
    provider.behaviour.id_token_claims = {"aud": [CLIENT_ID, "another"], "azp": CLIENT_ID}

    await assert_sign_in_accepted(browser)


@pytest.mark.parametrize("typ", ["at+jwt", "logout+jwt"])
async def test_other_kinds_of_token_are_not_taken_for_an_id_token(
    browser: Browser, provider: ScriptedProvider, caplog: pytest.LogCaptureFixture, typ: str
) -> None:
    provider.behaviour.id_token_header = {"typ": typ}

    await assert_sign_in_refused(browser, caplog, f"typ '{typ}' is not accepted")


async def test_id_token_signed_by_an_unpublished_key_is_refused(
    browser: Browser, provider: ScriptedProvider, caplog: pytest.LogCaptureFixture
) -> None:
    provider.signing_kid = provider.add_key("EC", publish=False)

    await assert_sign_in_refused(browser, caplog, UNKNOWN_KEY)


async def test_userinfo_about_another_subject_is_refused(
    browser: Browser, provider: ScriptedProvider, caplog: pytest.LogCaptureFixture
) -> None:
    provider.behaviour.userinfo_claims = {"sub": "someone-else"}

    await assert_sign_in_refused(browser, caplog, "userinfo sub differs")


async def test_userinfo_claims_complete_the_profile(
    browser: Browser, provider: ScriptedProvider
) -> None:
    provider.behaviour.userinfo_claims = {"locale": "en-GB"}

    await assert_sign_in_accepted(browser)

    assert (await browser.user()).json()["claims"]["locale"] == "en-GB"


async def test_id_token_without_kid_is_accepted_when_the_jwks_has_one_key(
    redis_url: str, redis_namespace: str
) -> None:
    async with isolated_bff(redis_url, redis_namespace) as (provider, bff):
        provider.behaviour.id_token_header = {"kid": None}
        async with open_browser(bff) as browser:
            await assert_sign_in_accepted(browser)


async def test_id_token_without_kid_is_refused_when_several_keys_fit(
    redis_url: str, redis_namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with isolated_bff(redis_url, redis_namespace) as (provider, bff):
        provider.add_key("EC")
        provider.behaviour.id_token_header = {"kid": None}
        async with open_browser(bff) as browser:
            await assert_sign_in_refused(browser, caplog, UNKNOWN_KEY)


async def test_key_rotation_is_followed_and_unknown_kids_refetch_the_jwks_only_when_allowed(
    redis_url: str, redis_namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with isolated_bff(redis_url, redis_namespace) as (provider, bff):
        async with open_browser(bff) as browser:
            await assert_sign_in_accepted(browser)
        assert provider.jwks_fetches == 1

        provider.rotate_key("EC")
        bff.clock.advance(31)  # past the 30 s re-fetch throttle
        async with open_browser(bff) as browser:
            await assert_sign_in_accepted(browser)
        assert provider.jwks_fetches == 2

        for _ in range(3):  # tokens under made-up kids, within the throttle interval
            provider.signing_kid = provider.add_key("EC", publish=False)
            async with open_browser(bff) as browser:
                await assert_sign_in_refused(browser, caplog, UNKNOWN_KEY)
        assert provider.jwks_fetches == 2

        bff.clock.advance(31)
        async with open_browser(bff) as browser:
            await assert_sign_in_refused(browser, caplog, UNKNOWN_KEY)
        assert provider.jwks_fetches == 3
