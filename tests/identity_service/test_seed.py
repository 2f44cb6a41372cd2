"""``parley dev``'s demo data: seeded idempotently, and usable to sign in through the BFF client."""

from __future__ import annotations

import asyncio

import httpx
import psycopg

from parley.seed import DEMO_BOT_ID, DEMO_BOT_SECRET, seed_development_data
from tests.identity_service.support import (
    Browser,
    IdentityServer,
    Login,
    RegisteredClient,
    client_credentials,
    exchange_code,
)

PUBLIC_URL = "http://127.0.0.1:8000"


def bff_environment() -> dict[str, str]:
    return {"PARLEY_ENV": "development", "PUBLIC_URL": PUBLIC_URL}


async def seed(database_url: str) -> list[str]:
    credentials = await asyncio.to_thread(seed_development_data, database_url, bff_environment())
    return credentials.banner_lines()


def count(database_url: str, query: str) -> int:
    with psycopg.connect(database_url) as connection:
        row = connection.execute(query).fetchone()
    assert row is not None
    return int(row[0])


async def test_seeding_twice_leaves_one_of_each(database_url: str) -> None:
    await seed(database_url)
    banner = await seed(database_url)

    people = count(
        database_url,
        "SELECT count(*) FROM identity.accounts WHERE email IN"
        " ('alice@example.com', 'bob@example.com', 'carol@example.com')",
    )
    clients = count(
        database_url,
        "SELECT count(*) FROM identity.clients WHERE client_id IN"
        " ('parley-bff', 'parley-services', 'demo-bot')",
    )
    assert (people, clients) == (3, 3)
    text = "\n".join(banner)
    assert "alice@example.com" in text
    assert "alice-in-parley" in text
    assert DEMO_BOT_SECRET in text


async def test_alice_signs_in_through_the_seeded_bff_client_and_the_bot_gets_tokens(
    database_url: str, identity: IdentityServer, http: httpx.AsyncClient
) -> None:
    await seed(database_url)
    bff = RegisteredClient(
        "parley-bff",
        "parley-bff-development-secret",
        redirect_uri=f"{PUBLIC_URL}/bff/callback",
    )
    browser = Browser(identity.url)
    try:
        callback = await browser.sign_in(bff, Login("alice@example.com", "alice-in-parley"))
    finally:
        await browser.aclose()

    tokens = await exchange_code(http, identity, bff, callback)
    bot = await client_credentials(http, identity, RegisteredClient(DEMO_BOT_ID, DEMO_BOT_SECRET))

    assert tokens.status_code == 200, tokens.text
    assert bot.status_code == 200, bot.text
    assert bot.json()["scope"] == "chat.read chat.write"
