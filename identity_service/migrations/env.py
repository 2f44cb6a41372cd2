"""Alembic environment of identity_service: its tables live in the ``identity`` schema."""

from servicekit.migrations import run_service_migrations

run_service_migrations("identity")
