#!/bin/sh
# Waits until the database at DATABASE_URL accepts connections, then runs `parley migrate`.
# docker-compose.yml runs it as the one-shot `migrate` service; against a cluster of your own:
#
#   DATABASE_URL=postgresql://parley@HOST:5433/parley uv run sh yugabyte/migrate.sh
#
# MIGRATE_WAIT_SECONDS (default 180) bounds the wait; a new YugabyteDB node takes about a
# minute before YSQL answers.
set -eu

: "${DATABASE_URL:?DATABASE_URL must name the database, e.g. postgresql://parley@HOST:5433/parley}"
MIGRATE_WAIT_SECONDS="${MIGRATE_WAIT_SECONDS:-180}"
export MIGRATE_WAIT_SECONDS

python - <<'PY'
import os
import sys
import time

import psycopg

# SQLAlchemy's driver suffix is not part of a libpq URL.
url = os.environ["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://", 1)
deadline = time.monotonic() + float(os.environ["MIGRATE_WAIT_SECONDS"])
while True:
    try:
        with psycopg.connect(url, connect_timeout=5) as connection:
            version = connection.execute("SELECT version()").fetchone()[0]
        break
    except psycopg.OperationalError as error:
        if time.monotonic() >= deadline:
            # The error names host and port, never the password.
            sys.exit(f"migrate: database not reachable: {error}".strip())
        print("migrate: waiting for the database", file=sys.stderr, flush=True)
        time.sleep(2)
kind = "YugabyteDB" if "-YB-" in version else "PostgreSQL"
print(f"migrate: connected to {kind}", file=sys.stderr, flush=True)
PY

exec parley migrate
