"""The job store's schema, as Alembic migrations: :class:`~tunesmith.jobs.store.JobStore`
upgrades its database to the newest revision when it opens (SQLite and PostgreSQL alike).

A schema change is a new file in ``versions/`` (``down_revision`` the newest so far) next to
the model change in ``store.py``; ``tests/test_service_store.py`` checks that the migrated
schema matches the models. SQLite alters tables in batch mode (copy and swap), so
``op.batch_alter_table`` works on both databases.

Revision 0001 is the schema of the last release without migrations; a database that release
created (no ``alembic_version`` table) is brought to it in place, keeping every row.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine

HERE = Path(__file__).parent


def config(connection: Connection) -> Config:
    """Alembic's configuration, built in code: no alembic.ini ships with the package."""
    settings = Config()
    settings.set_main_option("script_location", str(HERE))
    settings.attributes["connection"] = connection
    return settings


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate to ``revision`` in one transaction (PostgreSQL: servers starting together take turns)."""
    with engine.begin() as connection:
        command.upgrade(config(connection), revision)
