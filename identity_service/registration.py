"""Registering an account, and verifying its email address.

A person registers with an email address, a mobile number or both, a display name and a
password. What the page shows afterwards is the same whether or not the account was created, so
registering cannot be used to learn who has an account:

- new details: the account is created unverified; an email address is sent a verification link
  (24 hours, once). Mobile numbers stay unverified: Parley cannot send SMS yet.
- an email address or mobile number that an account already has: nothing is created, and the
  owner of that account is mailed (if it has an email address) that someone tried to register
  with it. Nothing is sent to a new email address given alongside a taken mobile number: that
  would tell whoever controls the address that the number has an account.

Unverified accounts may sign in; their tokens say ``email_verified: false``. Mail is returned
to the caller, to be sent after the response (see ``identity_service.mail``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from identity_service.account_mail import registration_attempt_mail, verification_mail
from identity_service.account_tokens import (
    AccountTokenStore,
    Verification,
    generate_account_token,
)
from identity_service.identifiers import LoginIdentifier
from identity_service.mail import Mail
from identity_service.passwords import Passwords
from identity_service.service import Throttled, account_details
from identity_service.store import Account, AccountStore, DuplicateAccount, NewAccount
from identity_service.throttle import Throttle


@dataclass(frozen=True)
class RegistrationForm:
    """What the person typed, as typed."""

    email: str
    phone: str
    display_name: str
    password: str


@dataclass(frozen=True)
class Registered:
    """What the page may say: the normalised details, never whether they were new."""

    email: str | None
    phone: str | None
    mails: tuple[Mail, ...]


class Registration:
    def __init__(
        self,
        accounts: AccountStore,
        tokens: AccountTokenStore,
        passwords: Passwords,
        throttle: Throttle,
        *,
        issuer: str,
        default_region: str,
    ) -> None:
        self._accounts = accounts
        self._tokens = tokens
        self._passwords = passwords
        self._throttle = throttle
        self._issuer = issuer
        self._default_region = default_region

    async def register(self, form: RegistrationForm, address: str, now: datetime) -> Registered:
        """Register the details of ``form``; ``InvalidDetails`` or ``Throttled`` when not."""
        email, phone, name = account_details(
            email=form.email or None,
            phone=form.phone or None,
            display_name=form.display_name,
            password=form.password,
            default_region=self._default_region,
        )
        identifiers = _identifiers(email, phone)
        keys = [identifier.throttle_key for identifier in identifiers]
        wait = await self._throttle.seconds_to_wait(keys, address)
        if wait is not None:
            raise Throttled(wait)
        await self._throttle.record_attempt(keys, address)
        new = NewAccount(
            email=email,
            phone=phone,
            display_name=name,
            # Hashed whether or not the details are taken, so both take as long.
            password_hash=await self._passwords.hash(form.password),
            email_verified=False,
            phone_verified=False,
        )
        token = generate_account_token() if email is not None else None
        try:
            account = await self._tokens.create_registered_account(new, token, now)
        except DuplicateAccount:
            return Registered(email, phone, await self._attempt_mails(identifiers))
        mails = () if token is None else (verification_mail(self._issuer, account, token),)
        return Registered(email, phone, mails)

    async def verify_email(self, token: str, now: datetime) -> Verification:
        return await self._tokens.verify_email(token, now)

    async def _attempt_mails(self, identifiers: list[LoginIdentifier]) -> tuple[Mail, ...]:
        """A note to each enabled account, with an email address, that has one of
        ``identifiers``."""
        owners: dict[uuid.UUID, tuple[Account, Literal["email address", "mobile number"]]] = {}
        for identifier in identifiers:
            account = await self._accounts.find_account(identifier)
            if account is not None and account.email and account.disabled_at is None:
                owners.setdefault(
                    account.id,
                    (account, "email address" if identifier.kind == "email" else "mobile number"),
                )
        return tuple(
            registration_attempt_mail(self._issuer, account, taken)
            for account, taken in owners.values()
        )


def _identifiers(email: str | None, phone: str | None) -> list[LoginIdentifier]:
    identifiers = []
    if email is not None:
        identifiers.append(LoginIdentifier("email", email))
    if phone is not None:
        identifiers.append(LoginIdentifier("phone", phone))
    return identifiers
