"""Settings and the account rules, without a server: what is refused, and what it says."""

from __future__ import annotations

import pytest

from identity_service.identifiers import InvalidIdentifier, parse_login_identifier
from identity_service.passwords import (
    PasswordRejected,
    check_password_policy,
    normalise_password,
)
from identity_service.service import InvalidDetails, account_details, is_acceptable_client_uri
from identity_service.settings import load_settings
from servicekit.settings import SettingsError

PRODUCTION = {
    "PARLEY_ENV": "production",
    "DATABASE_URL": "postgresql://db/parley",
    "REDIS_URL": "redis://redis:6379/0",
    "OIDC_ISSUER": "https://id.example.org",
    "API_AUDIENCE": "parley-api",
}


def test_production_needs_a_session_secret_a_mail_server_and_real_password_hashing() -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings({**PRODUCTION, "PASSWORD_HASH_PROFILE": "fast"})

    assert "IDENTITY_SESSION_SECRET: is required" in str(refused.value)
    assert "SMTP_URL: is required" in str(refused.value)
    assert "PASSWORD_HASH_PROFILE: must be 'standard' in production" in str(refused.value)
    settings = load_settings(
        {
            **PRODUCTION,
            "IDENTITY_SESSION_SECRET": "s" * 32,
            "SMTP_URL": "smtp+starttls://parley:secret@mail.example.org:587",
        }
    )
    assert settings.password_hash_profile == "standard"
    assert settings.access_token_lifetime_seconds == 300
    assert settings.mail_from is None  # derived from the issuer: no-reply@id.example.org


def test_development_without_a_mail_server_logs_mail() -> None:
    assert load_settings({}).smtp_url is None


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LOGIN_LIMITS_PER_ACCOUNT", "often"),
        ("DEFAULT_PHONE_REGION", "XX"),
        ("IDENTITY_SESSION_SECRET", "too short"),
        ("ACCESS_TOKEN_LIFETIME_SECONDS", "86400"),
        ("REGISTRATION_LIMITS_PER_ADDRESS", "lots"),
        ("SMTP_URL", "https://mail.example.org"),
        ("MAIL_FROM", "nobody"),
    ],
)
def test_bad_settings_are_named(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings({variable: value})


def test_identifiers_are_normalised_for_sign_in() -> None:
    assert parse_login_identifier(" Ada@Example.COM ").value == "ada@example.com"
    assert parse_login_identifier("+33 6 12 34 56 78").value == "+33612345678"
    assert parse_login_identifier("06 12 34 56 78", "FR").value == "+33612345678"
    with pytest.raises(InvalidIdentifier):
        parse_login_identifier("06 12 34 56 78")


def test_password_policy_wants_length_and_refuses_the_obvious() -> None:
    check_password_policy("a perfectly fine passphrase")
    check_password_policy("мой пароль — длинный")  # any script is welcome
    weak = ("short", "aaaaaaaaaaaaaaa", "Password2024!", "QWERTYUIOP", "x" * 129, "ten chars\x00")
    for password in weak:
        with pytest.raises(PasswordRejected):
            check_password_policy(password)
    for password, personal in [
        ("Ada@Example.com", "ada@example.com"),
        ("447700900123", "+447700900123"),
        ("Ada Lovelace", "Ada Lovelace"),
    ]:
        with pytest.raises(PasswordRejected):
            check_password_policy(password, [personal])


def test_passwords_are_compared_in_one_unicode_form() -> None:
    # "ﬁ" (U+FB01) and full-width letters are the same password as their plain forms.
    with pytest.raises(PasswordRejected):
        check_password_policy("ｐａｓｓｗｏｒｄ１２３")
    assert normalise_password("ﬁne passphrase") == "fine passphrase"


def test_account_details_need_an_email_or_phone_and_a_printable_name() -> None:
    with pytest.raises(InvalidDetails) as refused:
        account_details(email=None, phone=None, display_name="bad\u200bname")

    assert set(refused.value.errors) == {"email", "display_name"}
    assert account_details(email="A@B.org", phone=None, display_name=" Ada  L ") == (
        "a@b.org",
        None,
        "Ada L",
    )


def test_client_uris_must_be_https_or_loopback_and_have_no_fragment() -> None:
    assert is_acceptable_client_uri("https://chat.example.org/bff/callback")
    assert is_acceptable_client_uri("http://127.0.0.1:8000/bff/callback")
    assert is_acceptable_client_uri("http://localhost:8000/")
    assert not is_acceptable_client_uri("http://chat.example.org/callback")
    assert not is_acceptable_client_uri("https://chat.example.org/cb#fragment")
    assert not is_acceptable_client_uri("javascript:alert(1)")
