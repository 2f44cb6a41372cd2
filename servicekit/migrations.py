"""Alembic migrations, one schema per service, on PostgreSQL and YugabyteDB alike.

Each service with tables has ``<package>/migrations/`` (an ``env.py`` that calls
``run_service_migrations`` and a ``versions/`` folder). Its tables, and alembic's version table,
live in the service's own schema, so no service can trip over another's migrations.

YugabyteDB accepts PostgreSQL's DDL with a few differences that matter to Parley: tables can be
hash-sharded (``PRIMARY KEY ((conversation_id) HASH, seq DESC)``, which PostgreSQL cannot parse)
and DDL inside a transaction block is best avoided. Migrations ask ``is_yugabyte`` and branch.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import Connection, text

YUGABYTE_VERSION_MARKER: Final = "-YB-"


def is_yugabyte(connection: Connection) -> bool:
    """Whether ``connection`` talks to YugabyteDB (its ``version()`` contains ``-YB-``)."""
    version = connection.execute(text("SELECT version()")).scalar_one()
    return YUGABYTE_VERSION_MARKER in str(version)


def quote_identifier(name: str) -> str:
    """``name`` as a double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def primary_key_clause(
    hash_columns: tuple[str, ...], range_columns: tuple[str, ...], *, yugabyte: bool
) -> str:
    """A ``PRIMARY KEY`` clause: hash-sharded on YugabyteDB, a plain B-tree key on PostgreSQL.

    ``range_columns`` may end in `` DESC`` to store the newest rows first on YugabyteDB.
    """
    if yugabyte:
        hashed = ", ".join(quote_identifier(column) for column in hash_columns)
        ranged = "".join(", " + _range_column(column) for column in range_columns)
        return f"PRIMARY KEY (({hashed}) HASH{ranged})"
    columns = [*hash_columns, *(column.removesuffix(" DESC") for column in range_columns)]
    return "PRIMARY KEY (" + ", ".join(quote_identifier(column) for column in columns) + ")"


def _range_column(column: str) -> str:
    name, _, order = column.partition(" ")
    return quote_identifier(name) + (f" {order}" if order else " ASC")


def run_service_migrations(schema: str) -> None:
    """The body of a service's alembic ``env.py``: migrate ``schema`` on the given connection.

    ``parley migrate`` passes an open connection in ``config.attributes["connection"]``.
    """
    from alembic import context

    connection: Connection = context.config.attributes["connection"]
    connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(schema)}"))
    connection.commit()
    context.configure(
        connection=connection,
        version_table_schema=schema,
        # Each revision commits on its own: a failure leaves the schema at the last good revision,
        # and a revision can leave its transaction to build indexes (autocommit_block).
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
