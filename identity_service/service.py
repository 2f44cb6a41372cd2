"""The rules of identity_service: who may have an account, sign in, be a client, be listed.

Routes, pages and the CLI call these; these call the stores.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final
from urllib.parse import urlsplit

from identity_service.clients import CLIENT_ID_PATTERN, Client, ClientStore, NewClient
from identity_service.identifiers import (
    InvalidIdentifier,
    normalise_email,
    normalise_phone,
    parse_login_identifier,
)
from identity_service.passwords import (
    PasswordRejected,
    Passwords,
    check_password_policy,
)
from identity_service.sessions import EndedSession, LoginSessionStore, SignedInUser
from identity_service.store import Account, AccountStore, NewAccount
from identity_service.throttle import Throttle

MAX_DISPLAY_NAME_LENGTH: Final = 80  # a name shown beside every message must stay short
_SCOPE_TOKEN: Final = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,64}")  # RFC 6749 §3.3
_LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1"})


class InvalidDetails(ValueError):
    """Submitted details break the rules; ``errors`` maps each field to what is wrong with it."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))


class SignInRefused(Exception):
    """The identifier and password do not match an enabled account (deliberately vague)."""


class Throttled(Exception):
    """Too many attempts of some kind: wait ``retry_after_seconds`` before the next."""

    def __init__(self, retry_after_seconds: int) -> None:
        self.retry_after_seconds = retry_after_seconds
        super().__init__(f"retry after {retry_after_seconds} s")


def clean_display_name(text: str) -> str:
    """``text`` as a display name: trimmed, NFC, printable, 1–80 characters.

    Control and format characters are refused: zero-width and bidirectional controls let a name
    pass for another or reorder the text shown around it."""
    name = unicodedata.normalize("NFC", " ".join(text.split()))
    if not name:
        raise ValueError("Enter a name.")
    if len(name) > MAX_DISPLAY_NAME_LENGTH:
        raise ValueError(f"Use at most {MAX_DISPLAY_NAME_LENGTH} characters.")
    if any(unicodedata.category(character) in {"Cc", "Cf", "Cs"} for character in name):
        raise ValueError("The name has characters that cannot be shown.")
    return name


def account_details(
    *,
    email: str | None,
    phone: str | None,
    display_name: str,
    password: str | None = None,
    default_region: str = "",
) -> tuple[str | None, str | None, str]:
    """Normalised (email, phone, display name), or ``InvalidDetails`` naming every field that
    is wrong; with ``password``, the password policy is checked too."""
    errors: dict[str, str] = {}
    normalised_email = normalised_phone = None
    try:
        normalised_email = normalise_email(email) if email else None
    except InvalidIdentifier as error:
        errors["email"] = str(error)
    try:
        normalised_phone = normalise_phone(phone, default_region) if phone else None
    except InvalidIdentifier as error:
        errors["phone"] = str(error)
    if not email and not phone:
        errors["email"] = "Give an email address or a mobile number."
    name = ""
    try:
        name = clean_display_name(display_name)
    except ValueError as error:
        errors["display_name"] = str(error)
    if password is not None:
        try:
            personal = (email, normalised_email, phone, normalised_phone, name)
            check_password_policy(password, [word for word in personal if word])
        except PasswordRejected as error:
            errors["password"] = str(error)
    if errors:
        raise InvalidDetails(errors)
    return normalised_email, normalised_phone, name


async def create_account(
    accounts: AccountStore,
    passwords: Passwords,
    *,
    email: str | None,
    phone: str | None,
    display_name: str,
    password: str,
    verified: bool,
    now: datetime,
    default_region: str = "",
) -> Account:
    """A new account; ``InvalidDetails`` or ``DuplicateAccount`` when it cannot be made."""
    email, phone, name = account_details(
        email=email,
        phone=phone,
        display_name=display_name,
        password=password,
        default_region=default_region,
    )
    new = NewAccount(
        email=email,
        phone=phone,
        display_name=name,
        password_hash=await passwords.hash(password),
        email_verified=verified,
        phone_verified=verified,
    )
    return await accounts.create_account(new, now)


def check_client(new: NewClient) -> None:
    """``InvalidDetails`` unless ``new`` is a well-formed registration of its kind."""
    errors: dict[str, str] = {}
    if not CLIENT_ID_PATTERN.fullmatch(new.client_id):
        errors["client_id"] = "Use 1–64 letters, digits, '.', '_' or '-'."
    if new.kind == "web":
        if not new.redirect_uris:
            errors["redirect_uris"] = "A web client needs at least one redirect URI."
        backchannel = (new.backchannel_logout_uri,) if new.backchannel_logout_uri else ()
        for field, uris in (
            ("redirect_uris", new.redirect_uris),
            ("post_logout_redirect_uris", new.post_logout_redirect_uris),
            ("backchannel_logout_uri", backchannel),
        ):
            bad = [uri for uri in uris if not is_acceptable_client_uri(uri)]
            if bad:
                errors[field] = f"Not an https (or loopback http) URL without a fragment: {bad[0]}"
    elif new.redirect_uris or new.post_logout_redirect_uris or new.backchannel_logout_uri:
        errors["redirect_uris"] = "A machine client has no redirect or logout URIs."
    if not new.scopes:
        errors["scopes"] = "Give at least one scope."
    elif not all(_SCOPE_TOKEN.fullmatch(scope) for scope in new.scopes):
        errors["scopes"] = "Scopes are printable ASCII words without quotes or backslashes."
    if len(new.secret) < 16:
        errors["secret"] = "A client secret needs at least 16 characters."  # noqa: S105
    if errors:
        raise InvalidDetails(errors)


def is_acceptable_client_uri(uri: str) -> bool:
    """https, or http to a loopback host (RFC 8252 §7.3); absolute, without a fragment."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return False
    if not parts.hostname or parts.fragment or "#" in uri:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS)


async def register_client(clients: ClientStore, new: NewClient, now: datetime) -> Client:
    """The registered client; ``InvalidDetails`` or ``DuplicateClient`` when it cannot be."""
    check_client(new)
    return await clients.create_client(new, now)


class SignIn:
    """Checks credentials under the throttle and starts sign-in sessions."""

    def __init__(
        self,
        accounts: AccountStore,
        sessions: LoginSessionStore,
        passwords: Passwords,
        throttle: Throttle,
        *,
        session_lifetime_seconds: int,
        default_region: str,
    ) -> None:
        self._accounts = accounts
        self._sessions = sessions
        self._passwords = passwords
        self._throttle = throttle
        self._lifetime = timedelta(seconds=session_lifetime_seconds)
        self._default_region = default_region

    async def sign_in(
        self, identifier_text: str, password: str, address: str, now: datetime
    ) -> SignedInUser:
        """A new session for the account, or ``Throttled`` / ``SignInRefused``."""
        try:
            identifier = parse_login_identifier(identifier_text, self._default_region)
            account_key: str | None = identifier.throttle_key
        except InvalidIdentifier:
            identifier, account_key = None, None
        keys = [account_key] if account_key is not None else []
        wait = await self._throttle.seconds_to_wait(keys, address)
        if wait is not None:
            raise Throttled(wait)
        account = None if identifier is None else await self._accounts.find_account(identifier)
        if account is not None and account.disabled_at is not None:
            account = None
        # Verified even without an account, so that timing does not tell the two apart.
        matches = await self._passwords.verify(
            None if account is None else account.password_hash, password
        )
        if account is None or not matches or account_key is None:
            await self._throttle.record_attempt(keys, address)
            raise SignInRefused
        await self._throttle.forget_identifier(account_key)
        return await self._sessions.create_session(account, now, now + self._lifetime)


async def end_sessions(
    sessions: LoginSessionStore, session_ids: Sequence[uuid.UUID], now: datetime
) -> list[EndedSession]:
    """End each session, revoking its refresh tokens; those that had not already ended.

    Pass the result to ``BackchannelLogout.notify`` to tell the sessions' clients.
    """
    ended = [
        await sessions.end_session(session_id, now) for session_id in dict.fromkeys(session_ids)
    ]
    return [session for session in ended if session is not None]


@dataclass(frozen=True)
class DirectoryPage:
    accounts: list[Account]
    next_cursor: str | None


def encode_cursor(account: Account) -> str:
    payload = json.dumps([account.display_name.lower(), str(account.id)]).encode()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, uuid.UUID]:
    """The position an opaque cursor stands for; ``ValueError`` when it is not one of ours."""
    try:
        name, account_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        position = str(name), uuid.UUID(account_id)
    except (binascii.Error, ValueError, TypeError) as error:
        raise ValueError("not a directory cursor") from error
    if "\x00" in position[0]:
        raise ValueError("not a directory cursor")
    return position


async def search_directory(
    accounts: AccountStore, query: str, cursor: str | None, limit: int
) -> DirectoryPage:
    """One page of enabled accounts matching ``query``, by name."""
    after = decode_cursor(cursor) if cursor else None
    found = await accounts.search_active_accounts(query, after, limit + 1)
    page = found[:limit]
    return DirectoryPage(page, encode_cursor(page[-1]) if len(found) > limit else None)
