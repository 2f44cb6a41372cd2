"""How people are identified: an email address or a mobile number, each in one normal form.

Both are stored normalised so that uniqueness and sign-in do not depend on how a person typed
them: an email address in lower case (IDNA domain included), a phone number in E.164
(``+447700900123``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import phonenumbers
from email_validator import EmailNotValidError, validate_email


class InvalidIdentifier(ValueError):
    """The text is not a usable email address or mobile number; the message says why."""


def normalise_email(text: str) -> str:
    """``text`` as a normalised email address, or ``InvalidIdentifier``."""
    try:
        address = validate_email(text.strip(), check_deliverability=False)
    except EmailNotValidError as error:
        raise InvalidIdentifier(str(error)) from error
    # Mailbox names are case-sensitive in theory and never in practice; treating them so would
    # let "Alice@" and "alice@" be two accounts.
    return address.normalized.lower()


def normalise_phone(text: str, default_region: str = "") -> str:
    """``text`` as an E.164 mobile number, or ``InvalidIdentifier``.

    Without ``default_region`` the number must start with ``+`` and its country code.
    """
    try:
        number = phonenumbers.parse(text.strip(), default_region or None)
    except phonenumbers.NumberParseException as error:
        raise InvalidIdentifier("Enter a mobile number with its country code, e.g. +44…") from error
    if not phonenumbers.is_valid_number(number):
        raise InvalidIdentifier("This is not a valid phone number.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@dataclass(frozen=True)
class LoginIdentifier:
    """An email address or mobile number, normalised, as a person signs in with it."""

    kind: Literal["email", "phone"]
    value: str

    @property
    def throttle_key(self) -> str:
        """What throttles count attempts under (see identity_service.throttle)."""
        return f"{self.kind}:{self.value}"


def parse_login_identifier(text: str, default_region: str = "") -> LoginIdentifier:
    """An email address when ``text`` has an ``@``, otherwise a mobile number."""
    if "@" in text:
        return LoginIdentifier("email", normalise_email(text))
    return LoginIdentifier("phone", normalise_phone(text, default_region))
