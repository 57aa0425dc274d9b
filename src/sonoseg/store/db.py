"""Engines and migrations. SQLite (WAL) under the data folder by default; PostgreSQL by URL.

The schema is only ever created by Alembic (``upgrade``), never by ``create_all``, so an existing
database from any earlier release is migrated in place.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine

from sonoseg.store.paths import private_dir, private_file

MIGRATIONS = Path(__file__).parent / "migrations"
READ_ONLY = "sonoseg_read_only"


def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        db_path = url.split("///", 1)[1] if "///" in url else ""
        if db_path and db_path != ":memory:":
            private_dir(Path(db_path).parent)
            private_file(Path(db_path))
        eng = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(eng, "connect")
        def _pragmas(dbapi_conn, _rec):  # noqa: ANN001 - SQLAlchemy hook signature
            dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (savepoints need it)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA recursive_triggers=ON")  # REPLACE's implicit delete fires the audit triggers
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(eng, "begin")
        def _begin(conn):  # noqa: ANN001
            # IMMEDIATE: take the write lock up front, so a read-then-write transaction never
            # fails with SQLITE_BUSY mid-way when another writer committed in between. Sessions
            # opened read-only (Store.reader) use a plain deferred BEGIN: WAL readers never wait.
            ro = conn.get_execution_options().get(READ_ONLY, False)
            conn.exec_driver_sql("BEGIN" if ro else "BEGIN IMMEDIATE")

        return eng
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def _alembic_config(connection, audit_key: bytes | None = None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    cfg.attributes["audit_key"] = audit_key  # migration 0003 seals the existing audit rows with it
    return cfg


def upgrade(engine: Engine, revision: str = "head", audit_key: bytes | None = None) -> None:
    from alembic import command

    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn, audit_key), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()
