"""Schema migrations: an empty database gets every revision and the models' schema; one made
before migrations (by create_all, older columns missing) keeps its rows and is stamped; a
second start changes nothing. On SQLite, and PostgreSQL where the tests have it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from master.db import Database
from master.migrate import alembic_config, current_revision, head_revision, upgrade
from master.models import Base, Sweep, Trial
from master.spec import SweepSpec
from master.sweeps import create_sweep
from tests.master.factories import example_spec


def test_an_empty_database_gets_every_revision_and_the_models_schema(database_url: str) -> None:
    db = Database(database_url)
    try:
        assert upgrade(db.engine).startswith("upgraded from revision none (empty) to ")
        assert current_revision(db.engine) == head_revision()
        with db.engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert differences == []  # the revisions build exactly what the models describe
        assert upgrade(db.engine) == f"at revision {head_revision()}"  # a second start
    finally:
        db.dispose()


def test_a_database_made_before_migrations_keeps_its_rows(database_url: str) -> None:
    db = Database(database_url)
    try:
        # As hpsearch 0.1 before this revision made it: create_all, and without what the
        # evaluation work added since (a table and columns).
        Base.metadata.create_all(db.engine)
        with db.writing() as session:
            sweep = create_sweep(session, SweepSpec.model_validate(example_spec()))
            sweep_id = sweep.id
            trials = session.query(Trial).count()
        with db.engine.begin() as connection:
            connection.execute(text("DROP TABLE ensembles"))
            connection.execute(text("ALTER TABLE trials DROP COLUMN num_classes"))
            connection.execute(text("ALTER TABLE sweeps DROP COLUMN reason"))
            connection.execute(text("ALTER TABLE trial_epochs DROP COLUMN distributions"))
        assert "alembic_version" not in inspect(db.engine).get_table_names()
        db.dispose()
        db = Database(database_url)
        db.create_tables()  # what the master does when it starts
        assert current_revision(db.engine) == head_revision()
        inspector = inspect(db.engine)
        assert "ensembles" in inspector.get_table_names()
        assert "num_classes" in {c["name"] for c in inspector.get_columns("trials")}
        assert "reason" in {c["name"] for c in inspector.get_columns("sweeps")}
        with db.reading() as session:
            assert session.get(Sweep, sweep_id) is not None
            assert session.query(Trial).count() == trials > 0
        db.create_tables()  # and again: nothing to do
        assert current_revision(db.engine) == head_revision()
    finally:
        db.dispose()


def test_hpsearch_db_upgrade_and_revision_say_what_they_did(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"

    def db(action: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "master.cli", "db", action, "--database-url", url],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    head = head_revision()
    assert db("revision") == f"revision none (newest: {head})"
    assert db("upgrade") == f"database schema: upgraded from revision none (empty) to {head}"
    assert db("upgrade") == f"database schema: at revision {head}"
    assert db("revision") == f"revision {head} (newest: {head})"


def test_a_database_at_the_first_revision_is_upgraded_and_keeps_its_rows(
    database_url: str,
) -> None:
    db = Database(database_url)
    try:
        config = alembic_config()
        with db.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0001")  # as 0.1 left it
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO sweeps (id, name, spec, status, created_at) "
                    "VALUES (1, 'old', '{}', 'finished', CURRENT_TIMESTAMP)"
                )
            )
            connection.execute(
                text(
                    'INSERT INTO trials (id, sweep_id, stage_index, "index", hyperparameters, '
                    "seed, num_epochs, status, epochs_done, checkpoints, attempts, created_at) "
                    "VALUES (7, 1, 0, 0, '{}', 1, 2.0, 'finished', 2.0, '[]', 2, "
                    "CURRENT_TIMESTAMP)"
                )
            )
        assert upgrade(db.engine) == f"upgraded from revision 0001 to {head_revision()}"
        with db.reading() as session:
            trial = session.get(Trial, 7)
            assert trial is not None and trial.attempts == 2 and trial.lost_attempts == 0
    finally:
        db.dispose()
