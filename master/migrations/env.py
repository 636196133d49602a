"""Alembic's environment: run the migrations on the connection master.migrate passes in."""

from __future__ import annotations

from alembic import context

from master.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters by copying a table
)
with context.begin_transaction():
    context.run_migrations()
