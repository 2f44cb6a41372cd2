"""The ``parley`` command: run the whole system, one service, or an operator task.

Each subcommand is one function taking the parsed arguments and returning an exit code; a new
subcommand is one ``add_parser`` call and one function.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from parley.services import SERVICES, SERVICES_BY_NAME
from servicekit.settings import SettingsError

T = TypeVar("T")


def serve(arguments: argparse.Namespace) -> int:
    """Run one service in this process until it is told to stop."""
    import uvicorn

    from servicekit.app import WEBSOCKET_MAX_FRAME_BYTES
    from servicekit.logging import configure_logging

    spec = SERVICES_BY_NAME[arguments.service]
    settings = spec.load_settings()
    configure_logging(spec.name, level=settings.log_level, log_format=settings.log_format)
    uvicorn.run(
        spec.app_factory()(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        ws_max_size=WEBSOCKET_MAX_FRAME_BYTES,
        # Lets clients finish in-flight requests after SIGTERM, well within compose's 10 s.
        timeout_graceful_shutdown=5,
    )
    return 0


def database_url_from_environment() -> str:
    """``DATABASE_URL`` (or its development default), as every operator task reads it."""
    from servicekit.settings import EnvironmentReader, read_database_settings

    reader = EnvironmentReader()
    production = reader.choice("PARLEY_ENV", "development", ("development", "production"))
    database_url = str(
        read_database_settings(reader, production=production == "production")["database_url"]
    )
    reader.finish()
    return database_url


def migrate(arguments: argparse.Namespace) -> int:
    """Bring every service's schema up to date."""
    from parley.migrate import migrate_all

    migrate_all(database_url_from_environment())
    return 0


def user_create(arguments: argparse.Namespace) -> int:
    """Create an account; print its id, and its password when one was generated."""
    from identity_service.admin import create_user

    created = _run_identity_task(
        create_user(
            database_url_from_environment(),
            email=arguments.email,
            phone=arguments.phone,
            display_name=arguments.name,
            password=arguments.password,
        )
    )
    if created is None:
        return 1
    account = created.account
    print(f"created user {account.id} ({account.email or account.phone}, {account.display_name})")
    if created.generated_password is not None:
        print(f"password: {created.generated_password}")
    return 0


def user_disable(arguments: argparse.Namespace) -> int:
    """Disable an account, found by email address or id."""
    from identity_service.admin import disable_user

    account = _run_identity_task(disable_user(database_url_from_environment(), arguments.user))
    if account is None:
        print(f"parley: no user {arguments.user!r}", file=sys.stderr)
        return 1
    print(f"disabled user {account.id} ({account.email or account.phone})")
    return 0


def client_create(arguments: argparse.Namespace) -> int:
    """Register an OAuth client; print its secret, which is shown only this once."""
    from identity_service.admin import create_client

    created = _run_identity_task(
        create_client(
            database_url_from_environment(),
            client_id=arguments.id,
            kind="web" if arguments.web else "machine",
            redirect_uris=arguments.redirect_uri,
            post_logout_redirect_uris=arguments.post_logout_redirect_uri,
            backchannel_logout_uri=arguments.backchannel_logout_uri,
            scopes=" ".join(arguments.scope).split(),
            first_party=arguments.first_party,
        )
    )
    if created is None:
        return 1
    print(f"created {created.client.kind} client {created.client.client_id}")
    print(f"client secret (shown only now; store it safely): {created.secret}")
    return 0


def keys_rotate(arguments: argparse.Namespace) -> int:
    """Make a new signing key current; the old one stays published until its tokens expire."""
    from identity_service.admin import rotate_signing_key

    kid = _run_identity_task(rotate_signing_key(database_url_from_environment()))
    print(f"new signing key {kid} is now current")
    return 0


def _run_identity_task(task: Coroutine[Any, Any, T]) -> T | None:
    """Run an identity_service task; None (after saying why on stderr) when it is refused."""
    from identity_service.clients import DuplicateClient
    from identity_service.service import InvalidDetails
    from identity_service.store import DuplicateAccount

    try:
        return asyncio.run(task)
    except InvalidDetails as error:
        for field, message in error.errors.items():
            print(f"parley: {field}: {message}", file=sys.stderr)
    except DuplicateAccount:
        print("parley: an account with this email address or number exists", file=sys.stderr)
    except DuplicateClient as error:
        print(f"parley: a client {error} is already registered", file=sys.stderr)
    return None


def retention_run(arguments: argparse.Namespace) -> int:
    """Delete messages older than RETENTION_DAYS now, in small batches; print how many."""
    from messages_service.retention import run_retention
    from messages_service.settings import load_settings

    settings = load_settings()
    deleted = asyncio.run(run_retention(settings))
    print(f"deleted {deleted} messages older than {settings.retention_days} days")
    return 0


def dev(arguments: argparse.Namespace) -> int:
    """Everything a developer needs, in one terminal: what `make run` runs."""
    from parley.dev import run_development_stack

    return run_development_stack(
        data_dir=arguments.data_dir,
        base_port=arguments.base_port,
        postgres_port=arguments.postgres_port,
        redis_port=arguments.redis_port,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="parley", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev_parser = commands.add_parser("dev", help="run every service for local development")
    dev_parser.add_argument("--data-dir", default=".data", help="where embedded servers keep data")
    dev_parser.add_argument(
        "--base-port",
        type=int,
        default=8000,
        help="the bff's port; the other services take the next four (default 8000)",
    )
    dev_parser.add_argument(
        "--postgres-port",
        type=int,
        default=5432,
        help="where to look for a local PostgreSQL when DATABASE_URL is not set, and the port "
        "an embedded one takes when none answers there (default 5432)",
    )
    dev_parser.add_argument(
        "--redis-port",
        type=int,
        default=6379,
        help="the same for Redis when REDIS_URL is not set (default 6379)",
    )
    dev_parser.set_defaults(handler=dev)

    migrate_parser = commands.add_parser("migrate", help="apply database migrations")
    migrate_parser.set_defaults(handler=migrate)

    serve_parser = commands.add_parser("serve", help="run one service")
    serve_parser.add_argument("service", choices=[spec.name for spec in SERVICES])
    serve_parser.set_defaults(handler=serve)

    retention = commands.add_parser("retention", help="message retention")
    retention_commands = retention.add_subparsers(
        dest="retention_command", required=True, metavar="COMMAND"
    )
    retention_pass = retention_commands.add_parser(
        "run", help="delete messages older than RETENTION_DAYS (default 365) now"
    )
    retention_pass.set_defaults(handler=retention_run)

    _add_identity_commands(commands)
    return parser


def _add_identity_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``parley user``, ``parley client`` and ``parley keys``: identity_service's operator tasks."""
    user = commands.add_parser("user", help="manage accounts at the embedded identity provider")
    user_commands = user.add_subparsers(dest="user_command", required=True, metavar="COMMAND")
    create = user_commands.add_parser("create", help="create an account")
    create.add_argument("--email", help="email address (this, --phone or both)")
    create.add_argument("--phone", help="mobile number with country code, e.g. +33612345678")
    create.add_argument("--name", required=True, help="display name")
    create.add_argument("--password", help="initial password (default: generate and print one)")
    create.set_defaults(handler=user_create)
    disable = user_commands.add_parser("disable", help="disable an account")
    disable.add_argument("user", metavar="EMAIL_OR_ID")
    disable.set_defaults(handler=user_disable)

    client = commands.add_parser("client", help="manage OAuth clients")
    client_commands = client.add_subparsers(dest="client_command", required=True, metavar="COMMAND")
    register = client_commands.add_parser(
        "create", help="register a client; its generated secret is printed once"
    )
    kind = register.add_mutually_exclusive_group(required=True)
    kind.add_argument("--web", action="store_true", help="a web application (authorization code)")
    kind.add_argument(
        "--machine", action="store_true", help="a bot or service (client credentials)"
    )
    register.add_argument("--id", required=True, help="the client id")
    register.add_argument("--redirect-uri", action="append", default=[], help="repeatable")
    register.add_argument("--post-logout-redirect-uri", action="append", default=[])
    register.add_argument("--backchannel-logout-uri")
    register.add_argument(
        "--scope", action="append", default=[], help='machine clients: e.g. "chat.read chat.write"'
    )
    register.add_argument(
        "--first-party", action="store_true", help="web clients: skip the consent page"
    )
    register.set_defaults(handler=client_create)

    keys = commands.add_parser("keys", help="manage the identity provider's signing keys")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    rotate = keys_commands.add_parser("rotate", help="make a new signing key current")
    rotate.set_defaults(handler=keys_rotate)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    try:
        exit_code = int(arguments.handler(arguments))
    except SettingsError as error:
        print(f"parley: {error}", file=sys.stderr)
        return 2
    return exit_code
