"""Demo data for ``parley dev``: people to sign in as and OAuth clients, made idempotently.

Development only. The passwords and secrets below are well known on purpose: they are printed
in the ready banner, and an install with ``PARLEY_ENV=production`` never runs this.

    alice@example.com, bob@example.com, carol@example.com   people (created if missing)
    parley-bff       the BFF's web client, with the BFF's own OIDC_CLIENT_ID/SECRET and PUBLIC_URL
    parley-services  client credentials for service-to-service calls (scope parley.internal)
    demo-bot         a demo machine client (scopes chat.read chat.write)

Clients are rewritten on every run, so they follow the BFF's settings (another ``--base-port``
moves its redirect URIs).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from identity_service.clients import WEB_CLIENT_SCOPES, ClientStore, NewClient
from identity_service.clock import utc_now
from identity_service.passwords import Passwords
from identity_service.service import check_client, create_account
from identity_service.store import AccountStore, DuplicateAccount
from parley.services import SERVICES_BY_NAME
from servicekit.db import Database
from servicekit.settings import DEVELOPMENT_SERVICE_CLIENT_ID, DEVELOPMENT_SERVICE_CLIENT_SECRET

DEMO_PEOPLE: Final = (
    ("alice@example.com", "Alice", "alice-in-parley"),
    ("bob@example.com", "Bob", "bob-in-parley"),
    ("carol@example.com", "Carol", "carol-in-parley"),
)
SERVICES_CLIENT_ID: Final = DEVELOPMENT_SERVICE_CLIENT_ID
SERVICES_CLIENT_SECRET: Final = DEVELOPMENT_SERVICE_CLIENT_SECRET
DEMO_BOT_ID: Final = "demo-bot"
DEMO_BOT_SECRET: Final = "demo-bot-development-secret"  # noqa: S105 - development only
DEMO_BOT_SCOPES: Final = ("chat.read", "chat.write")


@dataclass(frozen=True)
class DemoCredentials:
    people: tuple[tuple[str, str], ...]  # (email, password)
    bot_id: str
    bot_secret: str

    def banner_lines(self) -> list[str]:
        """What the ready banner says about them."""
        lines = ["  Sign in as:"]
        lines += [f"    {email:<20} password {password}" for email, password in self.people]
        lines.append(
            f"  Machine client: {self.bot_id} / {self.bot_secret} ({' '.join(DEMO_BOT_SCOPES)})"
        )
        return lines


def seed_development_data(database_url: str, bff_environment: Mapping[str, str]) -> DemoCredentials:
    """Make sure the demo people and clients exist; ``bff_environment`` is what the BFF will
    read its settings from."""
    bff = SERVICES_BY_NAME["bff"].load_settings(bff_environment)
    clients = (
        NewClient(
            client_id=bff.oidc_client_id,
            secret=bff.oidc_client_secret,
            kind="web",
            redirect_uris=(f"{bff.public_url}/bff/callback",),
            post_logout_redirect_uris=(f"{bff.public_url}/",),
            backchannel_logout_uri=f"{bff.public_url}/bff/backchannel-logout",
            scopes=WEB_CLIENT_SCOPES,
            first_party=True,
        ),
        NewClient(
            client_id=SERVICES_CLIENT_ID,
            secret=SERVICES_CLIENT_SECRET,
            kind="machine",
            scopes=("parley.internal",),
        ),
        NewClient(
            client_id=DEMO_BOT_ID, secret=DEMO_BOT_SECRET, kind="machine", scopes=DEMO_BOT_SCOPES
        ),
    )
    for client in clients:
        check_client(client)
    asyncio.run(_seed(database_url, clients))
    return DemoCredentials(
        tuple((email, password) for email, _, password in DEMO_PEOPLE),
        DEMO_BOT_ID,
        DEMO_BOT_SECRET,
    )


async def _seed(database_url: str, clients: tuple[NewClient, ...]) -> None:
    database = Database(database_url, pool_size=1)
    try:
        accounts, passwords = AccountStore(database), Passwords("standard")
        for email, name, password in DEMO_PEOPLE:
            if await accounts.find_account_by_email(email) is not None:
                continue
            try:
                await create_account(
                    accounts,
                    passwords,
                    email=email,
                    phone=None,
                    display_name=name,
                    password=password,
                    verified=True,
                    now=utc_now(),
                )
            except DuplicateAccount:
                continue  # another seeder got there first
        client_store = ClientStore(database)
        for client in clients:
            await client_store.put_client(client, utc_now())
    finally:
        await database.close()
