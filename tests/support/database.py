"""Test databases: one per run and mode, built by the real migrations, dropped afterwards.

The YugabyteDB-like mode (BRIEF §7) makes PostgreSQL behave the way YugabyteDB does where it
matters to correctness: every session defaults to REPEATABLE READ (YugabyteDB's snapshot
isolation), and write transactions fail at COMMIT with a real SQLSTATE 40001 at random, raised by
the server from a deferred constraint trigger. Every process that connects — a test or a service
started as a subprocess — sees both, because both live in the database itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from parley.migrate import migrate_all

POSTGRES_MODE: Final = "postgresql"
YUGABYTE_LIKE_MODE: Final = "yugabyte-like"
# Chance that a write transaction is refused at commit; with 30 attempts per transaction the
# chance of exhausting them is negligible (0.3**30).
COMMIT_FAILURE_PROBABILITY: Final = 0.3
SERVICE_SCHEMAS: Final = ("identity", "conversations", "messages")

_FAULTS_DDL: Final = """
CREATE SCHEMA IF NOT EXISTS parley_faults;
CREATE TABLE IF NOT EXISTS parley_faults.settings (probability double precision NOT NULL);
CREATE OR REPLACE FUNCTION parley_faults.fail_some_commits() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Decide once per transaction: the flag is transaction-local (set_config(..., true)).
    IF current_setting('parley_faults.decided', true) IS DISTINCT FROM 'yes' THEN
        PERFORM set_config('parley_faults.decided', 'yes', true);
        IF random() < (SELECT coalesce(max(probability), 0) FROM parley_faults.settings) THEN
            RAISE EXCEPTION 'injected serialization failure' USING ERRCODE = '40001';
        END IF;
    END IF;
    RETURN NULL;
END
$$;
"""


@dataclass(frozen=True)
class StorageServers:
    """The PostgreSQL server (an admin URL) and the Redis server a test run uses."""

    postgres_url: str
    redis_url: str


def database_url_for(server_url: str, database: str) -> str:
    return make_url(server_url).set(database=database).render_as_string(hide_password=False)


def _admin_connection(server_url: str) -> psycopg.Connection:
    return psycopg.connect(
        make_url(server_url).set(drivername="postgresql").render_as_string(hide_password=False),
        autocommit=True,
    )


def create_test_database(server_url: str, database: str, mode: str) -> str:
    """Create ``database``, migrate it and prepare ``mode``; return its URL."""
    with _admin_connection(server_url) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        if mode == YUGABYTE_LIKE_MODE:
            admin.execute(
                sql.SQL(
                    "ALTER DATABASE {} SET default_transaction_isolation = 'repeatable read'"
                ).format(sql.Identifier(database))
            )
    url = database_url_for(server_url, database)
    migrate_all(url)
    if mode == YUGABYTE_LIKE_MODE:
        install_commit_faults(url, SERVICE_SCHEMAS, COMMIT_FAILURE_PROBABILITY)
    return url


def drop_test_database(server_url: str, database: str) -> None:
    with _admin_connection(server_url) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )


def install_commit_faults(database_url: str, schemas: Iterable[str], probability: float) -> None:
    """Make write transactions on every table in ``schemas`` fail at commit with 40001."""
    with _admin_connection(database_url) as connection:
        connection.execute(_FAULTS_DDL)
        connection.execute("DELETE FROM parley_faults.settings")
        connection.execute(
            "INSERT INTO parley_faults.settings (probability) VALUES (%s)", (probability,)
        )
        tables = connection.execute(
            """
            SELECT table_schema, table_name FROM information_schema.tables
            WHERE table_schema = ANY(%s) AND table_type = 'BASE TABLE'
              AND table_name <> 'alembic_version'
            """,
            (list(schemas),),
        ).fetchall()
        for schema, table in tables:
            connection.execute(
                sql.SQL("DROP TRIGGER IF EXISTS parley_fail_some_commits ON {}.{}").format(
                    sql.Identifier(schema), sql.Identifier(table)
                )
            )
            connection.execute(
                sql.SQL(
                    "CREATE CONSTRAINT TRIGGER parley_fail_some_commits"
                    " AFTER INSERT OR UPDATE OR DELETE ON {}.{}"
                    " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW"
                    " EXECUTE FUNCTION parley_faults.fail_some_commits()"
                ).format(sql.Identifier(schema), sql.Identifier(table))
            )
