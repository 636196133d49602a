"""Database engine and transactions: one context manager owns commit and rollback.

SQLite (the default) gets what several writers need (DESIGN.md): WAL, synchronous=NORMAL, a
30 s busy timeout, and BEGIN IMMEDIATE for transactions that read and then write, since a
deferred BEGIN fails at once with "database is locked" when it tries to upgrade. Errors that
mean "the database cannot be reached" become DatabaseUnavailable, which the API answers with
503 and the scheduler retries.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)
BUSY_TIMEOUT_SECONDS = 30
CONNECT_TIMEOUT_SECONDS = 5


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached or answered with a connection-level error."""


class Database:
    def __init__(self, url: str) -> None:
        self.url = with_driver(url)
        self.engine = _create_engine(self.url)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        writer = self.engine.execution_options(immediate=True)
        self._write = sessionmaker(writer, expire_on_commit=False)

    def create_tables(self) -> None:
        """Bring the schema to the newest migration (master.migrate): create it in an empty
        database, upgrade an older one, keeping its rows."""
        from master.migrate import upgrade  # Alembic is the master's, not the workers'

        with _unavailable_as_error():
            log.info("database schema: %s", upgrade(self.engine))

    def wait_and_create_tables(self, stopping: threading.Event, max_backoff: float = 5.0) -> bool:
        """Create the tables, waiting with back-off while the database cannot be reached (a
        master may start before its database). Returns False if `stopping` was set first."""
        backoff = 0.2
        while not stopping.is_set():
            try:
                self.create_tables()
                return True
            except DatabaseUnavailable as exc:
                log.warning("%s; retrying in %.1f s", exc, backoff)
                stopping.wait(backoff)
                backoff = min(backoff * 2, max_backoff)
        return False

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session for reads only; nothing is committed."""
        with _unavailable_as_error(), self._read() as session:
            yield session

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """A transaction that commits when the block ends and rolls back if it raises."""
        with _unavailable_as_error(), self._write() as session, session.begin():
            yield session

    def ping(self) -> None:
        with self.reading() as session:
            session.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()


def with_driver(url: str) -> str:
    """postgresql:// URLs (as Docker images and hosting services give them) use psycopg 3,
    the driver hpsearch installs, rather than SQLAlchemy's default psycopg2."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


@contextmanager
def _unavailable_as_error() -> Iterator[None]:
    try:
        yield
    except OperationalError as exc:
        raise DatabaseUnavailable(f"database unavailable: {exc.orig}") from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise DatabaseUnavailable(f"database connection lost: {exc.orig}") from exc
        raise


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # Pre-ping: a connection the server dropped (a restart) is replaced, not handed out.
        # A connect timeout: an unreachable server answers 503 in seconds, not minutes.
        connect_args = {"connect_timeout": CONNECT_TIMEOUT_SECONDS} if "psycopg" in url else {}
        return create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"timeout": BUSY_TIMEOUT_SECONDS, "check_same_thread": False}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite would defer it).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get("immediate", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine
