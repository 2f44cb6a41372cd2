"""``parley migrate``: one schema per service, idempotent, with the YugabyteDB branch."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest
from sqlalchemy import create_engine

from parley.migrate import migrate_all
from parley.services import SERVICES
from servicekit.db import sqlalchemy_url
from servicekit.migrations import is_yugabyte, primary_key_clause

SERVICE_SCHEMAS = {spec.schema for spec in SERVICES if spec.schema}


def schemas_with_version_tables(database_url: str) -> set[str]:
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT table_schema FROM information_schema.tables"
            " WHERE table_name = 'alembic_version'"
        ).fetchall()
    return {row[0] for row in rows}


def test_every_service_with_tables_gets_its_own_schema_and_version_table(
    database_url: str,
) -> None:
    assert {"identity", "conversations", "messages"} == SERVICE_SCHEMAS
    assert schemas_with_version_tables(database_url) == SERVICE_SCHEMAS


def test_migrating_again_changes_nothing(database_url: str) -> None:
    def snapshot() -> list[tuple[str, str, str]]:
        with psycopg.connect(database_url) as connection:
            return connection.execute(
                """
                SELECT table_schema, table_name, column_name FROM information_schema.columns
                WHERE table_schema = ANY(%s) ORDER BY 1, 2, 3
                """,
                (sorted(SERVICE_SCHEMAS),),
            ).fetchall()

    before = snapshot()
    migrate_all(database_url)
    assert snapshot() == before


def test_parley_migrate_command_uses_database_url(database_url: str) -> None:
    environment = {**os.environ, "DATABASE_URL": database_url}
    result = subprocess.run(
        [sys.executable, "-m", "parley", "migrate"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert schemas_with_version_tables(database_url) == SERVICE_SCHEMAS


def test_parley_migrate_names_a_bad_database_url() -> None:
    environment = {**os.environ, "DATABASE_URL": "mysql://somewhere/db"}
    result = subprocess.run(
        [sys.executable, "-m", "parley", "migrate"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_postgresql_is_not_mistaken_for_yugabyte(database_url: str) -> None:
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with engine.connect() as connection:
            assert is_yugabyte(connection) is False
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("yugabyte", "expected"),
    [
        (True, 'PRIMARY KEY (("conversation_id") HASH, "seq" DESC)'),
        (False, 'PRIMARY KEY ("conversation_id", "seq")'),
    ],
)
def test_primary_key_is_hash_sharded_only_on_yugabyte(yugabyte: bool, expected: str) -> None:
    clause = primary_key_clause(("conversation_id",), ("seq DESC",), yugabyte=yugabyte)
    assert clause == expected


def test_postgresql_accepts_the_postgresql_primary_key(database_url: str) -> None:
    clause = primary_key_clause(("conversation_id",), ("seq DESC",), yugabyte=False)
    with psycopg.connect(database_url) as connection:
        connection.execute(
            f"CREATE TEMPORARY TABLE pk_probe (conversation_id uuid, seq bigint, {clause})"
        )
        hash_clause = primary_key_clause(("conversation_id",), ("seq DESC",), yugabyte=True)
        with pytest.raises(psycopg.errors.SyntaxError):
            connection.execute(
                f"CREATE TEMPORARY TABLE pk_probe_yb (conversation_id uuid, seq bigint,"
                f" {hash_clause})"
            )
