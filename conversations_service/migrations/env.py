"""Alembic environment of conversations_service: its tables live in the ``conversations`` schema."""

from servicekit.migrations import run_service_migrations

run_service_migrations("conversations")
