"""Results store: SQLAlchemy models + Alembic migrations over SQLite (default) or PostgreSQL, a
content-addressed artefact folder, accounts/keys, the job queue and the audit log."""

from sonoseg.store.core import Store

__all__ = ["Store"]
