"""The ``parley`` command: run the whole system, one service, or an operator task.

Each subcommand is one function taking the parsed arguments and returning an exit code; a new
subcommand is one ``add_parser`` call and one function.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from parley.services import SERVICES, SERVICES_BY_NAME
from servicekit.settings import SettingsError


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


def migrate(arguments: argparse.Namespace) -> int:
    """Bring every service's schema up to date."""
    from parley.migrate import migrate_all
    from servicekit.settings import EnvironmentReader, read_database_settings

    reader = EnvironmentReader()
    production = reader.choice("PARLEY_ENV", "development", ("development", "production"))
    database_url = str(
        read_database_settings(reader, production=production == "production")["database_url"]
    )
    reader.finish()
    migrate_all(database_url)
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    try:
        exit_code = int(arguments.handler(arguments))
    except SettingsError as error:
        print(f"parley: {error}", file=sys.stderr)
        return 2
    return exit_code
