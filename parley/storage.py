"""Whether a PostgreSQL or Redis server answers at a URL, and if not, why."""

from __future__ import annotations

import psycopg
import redis


def postgres_problem(url: str, timeout_seconds: float) -> str | None:
    """Why PostgreSQL at ``url`` cannot run ``select 1``, or None when it can."""
    # libpq does not know SQLAlchemy's driver suffix, which DATABASE_URL may carry.
    libpq_url = url.replace("postgresql+psycopg://", "postgresql://", 1)
    try:
        with psycopg.connect(libpq_url, connect_timeout=max(1, round(timeout_seconds))) as db:
            db.execute("select 1")
    except psycopg.Error as error:
        return _one_line(error)
    return None


def redis_problem(url: str, timeout_seconds: float) -> str | None:
    """Why Redis at ``url`` does not answer PING, or None when it does."""
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=timeout_seconds, socket_timeout=timeout_seconds
        )
        with client:
            client.ping()
    except (redis.RedisError, ValueError) as error:
        return _one_line(error)
    return None


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__
