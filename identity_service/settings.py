"""Settings of identity_service, read once at start-up.

identity_service is the OpenID Provider named by ``OIDC_ISSUER``: that URL is its own public
address, and every endpoint it advertises in discovery hangs off it, as do the links it mails.
Mail goes through ``SMTP_URL``, which production requires; in development without it, each
message is written to the log instead (see ``identity_service.mail``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

import phonenumbers
from limits import RateLimitItem, parse_many

from servicekit.settings import (
    DatabaseServiceSettings,
    EnvironmentReader,
    dev_default,
    load_service_settings,
)

# Bytes; the key signs the provider's cookies and CSRF tokens with HMAC-SHA256.
MINIMUM_SESSION_SECRET_LENGTH = 32
# Failed sign-ins a client may have before it must wait; each tier allows more failures over a
# longer window, so the wait grows the longer the failures go on (see identity_service.throttle).
DEFAULT_ACCOUNT_LIMITS = "5 per minute; 10 per 15 minutes; 20 per hour"
# Per client address: higher, because many people may share one address behind a NAT.
DEFAULT_ADDRESS_LIMITS = "20 per minute; 100 per hour"
# Registrations and reset requests each send a mail to the address given: per identifier the
# limits stop anyone filling a stranger's inbox; per client address, a whole office may
# register on its first day.
DEFAULT_MAIL_IDENTIFIER_LIMITS = "3 per hour; 10 per day"
DEFAULT_MAIL_ADDRESS_LIMITS = "30 per hour; 200 per day"
SMTP_SCHEMES = ("smtp", "smtps", "smtp+starttls")
PASSWORD_HASH_PROFILES = ("standard", "fast")


@dataclass(frozen=True, kw_only=True)
class IdentitySettings(DatabaseServiceSettings):
    """The common and database settings, plus the provider's own."""

    # Signs the provider's session cookie and its forms' CSRF tokens.
    identity_session_secret: str
    # Seconds. Access tokens cannot be revoked (they are JWTs), so they live briefly.
    access_token_lifetime_seconds: int
    id_token_lifetime_seconds: int
    # Seconds a sign-in lasts: the provider's session cookie and every refresh token issued
    # under that sign-in end together.
    login_session_lifetime_seconds: int
    login_limits_per_account: tuple[RateLimitItem, ...]
    login_limits_per_address: tuple[RateLimitItem, ...]
    # "standard" is argon2-cffi's RFC 9106 profile; "fast" is for test suites only.
    password_hash_profile: str
    # ISO 3166 region for mobile numbers written without a country code ("" = always require +).
    default_phone_region: str
    registration_limits_per_identifier: tuple[RateLimitItem, ...]
    registration_limits_per_address: tuple[RateLimitItem, ...]
    reset_limits_per_identifier: tuple[RateLimitItem, ...]
    reset_limits_per_address: tuple[RateLimitItem, ...]
    # Where mail goes (see identity_service.mail); None only in development, where each message
    # is written to the log instead.
    smtp_url: str | None
    # The From of every mail; None = "Parley <no-reply@…>" at the issuer's host.
    mail_from: str | None

    @property
    def max_token_lifetime_seconds(self) -> int:
        """The longest a token signed by this provider stays valid."""
        return max(self.access_token_lifetime_seconds, self.id_token_lifetime_seconds)


def _rate_limits(reader: EnvironmentReader, name: str, default: str) -> tuple[RateLimitItem, ...]:
    raw = reader.text(name, default)
    try:
        return tuple(parse_many(raw))
    except ValueError:
        reader.problems.append(f"{name}: must be rate limits like {default!r}, got {raw!r}")
        return tuple(parse_many(default))


def _read_identity_settings(reader: EnvironmentReader, production: bool) -> dict[str, Any]:
    secret = reader.text(
        "IDENTITY_SESSION_SECRET",
        dev_default(production, "development-only-identity-key-not-a-secret"),
    )
    if secret and len(secret) < MINIMUM_SESSION_SECRET_LENGTH:
        reader.problems.append(
            f"IDENTITY_SESSION_SECRET: must be at least {MINIMUM_SESSION_SECRET_LENGTH} characters"
        )
    region = reader.text("DEFAULT_PHONE_REGION", "").upper()
    if region and region not in phonenumbers.SUPPORTED_REGIONS:
        reader.problems.append(f"DEFAULT_PHONE_REGION: unknown region {region!r}")
    smtp_url = reader.url("SMTP_URL", dev_default(production, ""), schemes=SMTP_SCHEMES) or None
    mail_from = reader.text("MAIL_FROM", "") or None
    if mail_from is not None and "@" not in parseaddr(mail_from)[1]:
        reader.problems.append("MAIL_FROM: must be an address like 'Parley <no-reply@…>'")
    hash_profile = reader.choice("PASSWORD_HASH_PROFILE", "standard", PASSWORD_HASH_PROFILES)
    if production and hash_profile != PASSWORD_HASH_PROFILES[0]:
        reader.problems.append("PASSWORD_HASH_PROFILE: must be 'standard' in production")
    return {
        "identity_session_secret": secret,
        "access_token_lifetime_seconds": reader.integer(
            "ACCESS_TOKEN_LIFETIME_SECONDS", 300, minimum=30, maximum=3600
        ),
        "id_token_lifetime_seconds": reader.integer(
            "ID_TOKEN_LIFETIME_SECONDS", 300, minimum=30, maximum=3600
        ),
        "login_session_lifetime_seconds": reader.integer(
            "LOGIN_SESSION_LIFETIME_SECONDS", 7 * 24 * 3600, minimum=300, maximum=90 * 24 * 3600
        ),
        "login_limits_per_account": _rate_limits(
            reader, "LOGIN_LIMITS_PER_ACCOUNT", DEFAULT_ACCOUNT_LIMITS
        ),
        "login_limits_per_address": _rate_limits(
            reader, "LOGIN_LIMITS_PER_ADDRESS", DEFAULT_ADDRESS_LIMITS
        ),
        "password_hash_profile": hash_profile,
        "default_phone_region": region,
        "registration_limits_per_identifier": _rate_limits(
            reader, "REGISTRATION_LIMITS_PER_IDENTIFIER", DEFAULT_MAIL_IDENTIFIER_LIMITS
        ),
        "registration_limits_per_address": _rate_limits(
            reader, "REGISTRATION_LIMITS_PER_ADDRESS", DEFAULT_MAIL_ADDRESS_LIMITS
        ),
        "reset_limits_per_identifier": _rate_limits(
            reader, "RESET_LIMITS_PER_IDENTIFIER", DEFAULT_MAIL_IDENTIFIER_LIMITS
        ),
        "reset_limits_per_address": _rate_limits(
            reader, "RESET_LIMITS_PER_ADDRESS", DEFAULT_MAIL_ADDRESS_LIMITS
        ),
        "smtp_url": smtp_url,
        "mail_from": mail_from,
    }


def load_settings(environ: Mapping[str, str] | None = None) -> IdentitySettings:
    return load_service_settings(
        IdentitySettings, "identity_service", environ, _read_identity_settings
    )
