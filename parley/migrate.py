"""``parley migrate``: bring every service's schema up to the newest revision.

Running it again is harmless: alembic records each schema's revision in that schema's own
version table and applies only what is missing.
"""

from __future__ import annotations

import logging

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine

from parley.services import SERVICES, ServiceSpec
from servicekit.db import sqlalchemy_url

logger = logging.getLogger("parley.migrate")


def alembic_config(spec: ServiceSpec) -> Config:
    """The alembic configuration of one service's migrations."""
    config = Config()
    config.set_main_option("script_location", f"{spec.package}:migrations")
    return config


def migrate_all(database_url: str) -> None:
    """Apply every service's pending migrations to the database at ``database_url``."""
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        for spec in SERVICES:
            if spec.schema is None:
                continue
            config = alembic_config(spec)
            with engine.connect() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
            logger.info("migrated", extra={"schema": spec.schema})
    finally:
        engine.dispose()
