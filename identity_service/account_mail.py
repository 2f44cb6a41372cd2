"""The messages identity_service mails to people, with links under the issuer's URL."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlencode

from identity_service.account_tokens import EMAIL_VERIFICATION_HOURS, PASSWORD_RESET_HOURS
from identity_service.mail import Mail
from identity_service.store import Account

SIGNATURE = "\n\n— Parley\n"


def hours(count: int) -> str:
    return "1 hour" if count == 1 else f"{count} hours"


def verification_mail(issuer: str, account: Account, token: str) -> Mail:
    assert account.email is not None
    link = f"{issuer}/verify?" + urlencode({"token": token})
    lifetime = hours(EMAIL_VERIFICATION_HOURS)
    return Mail(
        to=account.email,
        subject="Verify your email address for Parley",
        body=(
            f"Hello {account.display_name},\n\n"
            "To confirm that this address is yours, open this link within "
            f"{lifetime}:\n\n{link}\n\n"
            "If you did not create a Parley account, ignore this message: nothing more will "
            "happen." + SIGNATURE
        ),
    )


def registration_attempt_mail(
    issuer: str, account: Account, taken: Literal["email address", "mobile number"]
) -> Mail:
    """To the owner of an account whose email address or mobile number someone tried to
    register again: the page that registration showed says nothing of it."""
    assert account.email is not None
    return Mail(
        to=account.email,
        subject=f"Someone tried to register with your {taken}",
        body=(
            f"Hello {account.display_name},\n\n"
            f"Someone, perhaps you, tried to create a Parley account with your {taken}. "
            "It already belongs to your account, so no new account was made.\n\n"
            "If it was you, sign in with your existing password. If you have forgotten it, "
            f"choose a new one here:\n\n{issuer}/reset\n\n"
            "If it was not you, you can ignore this message: your account has not changed."
            + SIGNATURE
        ),
    )


def password_reset_mail(issuer: str, account: Account, token: str) -> Mail:
    assert account.email is not None
    link = f"{issuer}/reset/confirm?" + urlencode({"token": token})
    lifetime = hours(PASSWORD_RESET_HOURS)
    return Mail(
        to=account.email,
        subject="Choose a new Parley password",
        body=(
            f"Hello {account.display_name},\n\n"
            "Someone, perhaps you, asked to reset the password of your Parley account. To "
            f"choose a new one, open this link within {lifetime}:\n\n{link}\n\n"
            "Choosing a new password signs you out everywhere. If you did not ask for this, "
            "ignore this message: your password has not changed." + SIGNATURE
        ),
    )
