"""Whether a PostgreSQL or Redis server answers at a URL."""

from __future__ import annotations

import psycopg
import redis
from sqlalchemy.engine import make_url

PROBE_TIMEOUT_SECONDS = 2


def postgres_answers(database_url: str) -> bool:
    try:
        url = make_url(database_url).set(drivername="postgresql")
        with psycopg.connect(
            url.render_as_string(hide_password=False), connect_timeout=PROBE_TIMEOUT_SECONDS
        ) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def redis_answers(redis_url: str) -> bool:
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=PROBE_TIMEOUT_SECONDS)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()
