"""Resetting a forgotten password by a link mailed to the account's email address.

Asking for a link always gets the same answer, whether or not an account matches: the link is
mailed only when an enabled account has the email address (or mobile number) given, and then to
that account's email address. An account with only a mobile number cannot reset its password
here (Parley cannot send SMS yet); an operator can set a new one.

The link (1 hour, once) leads to a form for the new password, which must meet the policy.
Setting it ends every sign-in session of the account, which revokes their refresh tokens; the
sessions' clients are told by back-channel logout. Following the link also proves control of the
address, so it counts as verified afterwards.
"""

from __future__ import annotations

from datetime import datetime

from identity_service.account_mail import password_reset_mail
from identity_service.account_tokens import (
    AccountTokenStore,
    PasswordChanged,
    generate_account_token,
)
from identity_service.identifiers import parse_login_identifier
from identity_service.mail import Mail
from identity_service.passwords import PasswordRejected, Passwords, check_password_policy
from identity_service.service import InvalidDetails, Throttled
from identity_service.store import Account, AccountStore
from identity_service.throttle import Throttle


class PasswordReset:
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

    async def request_link(self, identifier_text: str, address: str, now: datetime) -> list[Mail]:
        """The mail to send for a reset request (none when no enabled account with an email
        address matches); ``InvalidIdentifier`` or ``Throttled`` when it cannot be made."""
        identifier = parse_login_identifier(identifier_text, self._default_region)
        keys = [identifier.throttle_key]
        wait = await self._throttle.seconds_to_wait(keys, address)
        if wait is not None:
            raise Throttled(wait)
        await self._throttle.record_attempt(keys, address)
        account = await self._accounts.find_account(identifier)
        if account is None or account.disabled_at is not None or account.email is None:
            return []
        token = generate_account_token()
        await self._tokens.create_reset_token(account, token, now)
        return [password_reset_mail(self._issuer, account, token)]

    async def account_to_reset(self, token: str, now: datetime) -> Account | None:
        """The account a usable reset link is for; None when the link is not usable."""
        return await self._tokens.get_reset_account(token, now)

    async def choose_password(
        self, token: str, password: str, now: datetime
    ) -> PasswordChanged | None:
        """Set ``password`` through a reset link; None when the link is not usable,
        ``InvalidDetails`` when the password breaks the policy."""
        account = await self._tokens.get_reset_account(token, now)
        if account is None:
            return None
        personal = (account.email, account.phone, account.display_name)
        try:
            check_password_policy(password, [word for word in personal if word])
        except PasswordRejected as error:
            raise InvalidDetails({"password": str(error)}) from error
        password_hash = await self._passwords.hash(password)
        return await self._tokens.reset_password(token, password_hash, now)
