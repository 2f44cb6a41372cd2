"""``parley user``, ``parley client`` and ``parley keys`` against the test database."""

from __future__ import annotations

import hashlib
import re

import argon2
import psycopg
import pytest

from parley.cli import main
from tests.identity_service.support import unique


@pytest.fixture
def database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", database_url)
    return database_url


def row(database_url: str, query: str, *parameters: object) -> tuple[object, ...]:
    with psycopg.connect(database_url) as connection:
        found = connection.execute(query, parameters).fetchone()
    assert found is not None
    return tuple(found)


def test_user_create_prints_a_generated_password_and_stores_only_its_hash(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    email = unique("Cli.Person") + "@Example.COM"

    assert main(["user", "create", "--email", email, "--name", "  Cli   Person "]) == 0

    output = capsys.readouterr().out
    password = re.search(r"^password: (\S+)$", output, re.MULTILINE)
    assert password is not None
    stored_email, name, password_hash, verified = row(
        database,
        "SELECT email, display_name, password_hash, email_verified_at IS NOT NULL"
        " FROM identity.accounts WHERE email = %s",
        email.lower(),
    )
    assert (stored_email, name, verified) == (email.lower(), "Cli Person", True)
    assert str(password_hash).startswith("$argon2id$")
    assert password[1] not in str(password_hash)
    assert argon2.PasswordHasher().verify(str(password_hash), password[1])


def test_user_create_refuses_duplicates_and_bad_details(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    email = unique("twice") + "@example.com"
    assert main(["user", "create", "--email", email, "--name", "Once"]) == 0

    duplicate = main(["user", "create", "--email", email.upper(), "--name", "Twice"])
    bad_email = main(["user", "create", "--email", "not-an-address", "--name", "X"])
    weak = main(
        [
            "user",
            "create",
            "--email",
            unique("w") + "@example.com",
            "--name",
            "W",
            "--password",
            "short",
        ]
    )
    nothing = main(["user", "create", "--name", "Nobody"])

    errors = capsys.readouterr().err
    assert (duplicate, bad_email, weak, nothing) == (1, 1, 1, 1)
    assert "exists" in errors
    assert "email:" in errors
    assert "password: Use at least 10 characters." in errors


def test_user_disable_by_email(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    email = unique("leaving") + "@example.com"
    main(["user", "create", "--email", email, "--name", "Leaving", "--password", "a fine password"])

    assert main(["user", "disable", email]) == 0
    assert main(["user", "disable", "nobody@example.com"]) == 1

    assert row(
        database, "SELECT disabled_at IS NOT NULL FROM identity.accounts WHERE email = %s", email
    ) == (True,)


def test_client_create_prints_the_secret_once_and_stores_a_digest(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    web_id, bot_id = unique("cli-web"), unique("cli-bot")

    web = main(
        [
            "client",
            "create",
            "--web",
            "--id",
            web_id,
            "--redirect-uri",
            "https://chat.example.org/bff/callback",
            "--post-logout-redirect-uri",
            "https://chat.example.org/",
            "--backchannel-logout-uri",
            "https://chat.example.org/bff/backchannel-logout",
            "--first-party",
        ]
    )
    web_secret = re.findall(r"client secret .*: (\S+)$", capsys.readouterr().out, re.MULTILINE)
    bot = main(["client", "create", "--machine", "--id", bot_id, "--scope", "chat.read chat.write"])
    bot_output = capsys.readouterr().out

    assert (web, bot) == (0, 0)
    assert len(web_secret) == 1
    secret_hash, kind, redirect_uris, first_party = row(
        database,
        "SELECT secret_hash, kind, redirect_uris, first_party FROM identity.clients"
        " WHERE client_id = %s",
        web_id,
    )
    assert secret_hash == "sha256:" + hashlib.sha256(web_secret[0].encode()).hexdigest()
    assert (kind, redirect_uris, first_party) == (
        "web",
        ["https://chat.example.org/bff/callback"],
        True,
    )
    assert row(
        database, "SELECT kind, scopes FROM identity.clients WHERE client_id = %s", bot_id
    ) == ("machine", ["chat.read", "chat.write"])
    assert f"created machine client {bot_id}" in bot_output


def test_client_create_refuses_unsafe_redirect_uris(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(
        [
            "client",
            "create",
            "--web",
            "--id",
            unique("unsafe"),
            "--redirect-uri",
            "http://chat.example.org/callback",
        ]
    )

    assert status == 1
    assert "redirect_uris" in capsys.readouterr().err


def test_keys_rotate_makes_a_new_current_key(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "rotate"]) == 0

    kid = re.search(r"new signing key (\w+) is now current", capsys.readouterr().out)
    assert kid is not None
    assert row(
        database,
        "SELECT count(*) FROM identity.signing_keys WHERE retired_at IS NULL AND kid = %s",
        kid[1],
    ) == (1,)
    assert row(database, "SELECT count(*) FROM identity.signing_keys WHERE retired_at IS NULL") == (
        1,
    )
