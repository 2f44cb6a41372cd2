"""Alembic environment of messages_service: its tables live in the ``messages`` schema."""

from servicekit.migrations import run_service_migrations

run_service_migrations("messages")
