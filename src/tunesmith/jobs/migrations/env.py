"""Alembic's environment: runs on the connection :func:`tunesmith.jobs.migrations.upgrade` passes."""

from alembic import context
from sqlalchemy import text

from tunesmith.jobs.store import Base

MIGRATION_LOCK = 7305_2026
"""A PostgreSQL advisory lock key: one server migrates at a time; the others then find nothing to do."""

connection = context.config.attributes["connection"]
if connection.dialect.name == "postgresql":
    connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))  # released at commit
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")  # SQLite: ALTERs as copy-and-swap
with context.begin_transaction():
    context.run_migrations()
