"""Schema migrations with Alembic (master/migrations): the master upgrades its database to
the newest revision when it starts, and `hpsearch db upgrade` does it on request.

- An empty database gets every revision in order.
- A database made before migrations existed (tables, no alembic_version: hpsearch up to
  0.1's create_all) is brought to the current schema the old way (missing tables, columns
  and indexes added; rows kept) and stamped with the newest revision.
- Otherwise the revisions it lacks run.
Two masters starting at once upgrade one after the other: the upgrade runs in one
transaction that first takes a lock (PostgreSQL: an advisory lock; SQLite: BEGIN
IMMEDIATE), and looks at the database only then.
"""

from __future__ import annotations

import logging

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from master.models import Base

log = logging.getLogger(__name__)
MIGRATION_LOCK = 7_031_0001  # pg_advisory_xact_lock's key: any constant of our own


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "master:migrations")
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> str:
    """Bring the database to the newest revision; returns what was done, in words."""
    config = alembic_config()
    with engine.execution_options(immediate=True).begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
        config.attributes["connection"] = connection
        tables = set(inspect(connection).get_table_names())
        if "alembic_version" not in tables and "sweeps" in tables:
            _bring_to_current(connection)
            command.stamp(config, "head")
            return f"a database made before migrations: brought to revision {head_revision()}"
        before = MigrationContext.configure(connection).get_current_revision()
        command.upgrade(config, "head")
        after = head_revision()
        if before == after:
            return f"at revision {after}"
        return f"upgraded from revision {before or 'none (empty)'} to {after}"


def _bring_to_current(connection: Connection) -> None:
    """Missing tables, columns and indexes added to a database create_all made: what the
    master did before migrations (a new column then had to be nullable or have a server
    default, so this can add every column 0.1 has)."""
    Base.metadata.create_all(connection)
    inspector = inspect(connection)
    for table in Base.metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            kind = column.type.compile(dialect=connection.dialect)
            default = column.server_default
            clause = f" DEFAULT {default.arg.text}" if default is not None else ""  # type: ignore[attr-defined]
            log.warning(
                "adding column %s.%s to a database of an older version", table.name, column.name
            )
            connection.exec_driver_sql(
                f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}{clause}'
            )
        for index in table.indexes:
            index.create(connection, checkfirst=True)


def drop_everything(engine: Engine) -> None:
    """Every hpsearch table and the migrations' bookkeeping (tests and benchmarks empty a
    database so): the next start creates the schema afresh."""
    Base.metadata.drop_all(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
