"""The schema (SQLAlchemy 2). Versioned by the Alembic migrations beside it: change both together.

No patient identifiers anywhere: studies are keyed by a pseudonym, DICOM UIDs are kept only as keyed
hashes, upload file names are never stored. Artefact bytes live in the content-addressed folder;
rows hold their SHA-256, verified on every read.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.types import TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

ROLES = ("viewer", "operator", "admin")
CLASSES = ("normal", "benign", "malignant")
JOB_STATES = ("queued", "running", "done", "failed")
ARTEFACT_KINDS = ("mask", "overlay", "seg", "seg_original", "measurements", "frame_image", "frame_mask")
OUT_OF_SCOPE = "out_of_scope"  # the worklist/results filter value for results without a verdict


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timezone-aware on both backends. PostgreSQL has ``timestamptz``; SQLite has no offset, so values
    are stored as UTC and read back tagged UTC (without this, SQLite returned naive times and compared
    ``since=...+01:00`` as local clock time). Naive inputs are taken as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        value = (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    classes: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)  # "benign,malignant"; None = all
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    def allowed_classes(self) -> Optional[list[str]]:
        return [c for c in self.classes.split(",") if c] if self.classes else None


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)  # public part, shown in listings
    key_hash: Mapped[str] = mapped_column(String(64))  # HMAC-SHA256 of the whole key
    name: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime(), nullable=True)
    user: Mapped[User] = relationship()


class Study(Base):
    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pseudonym: Mapped[str] = mapped_column(String(32), unique=True)
    uid_hash: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Series(Base):
    __tablename__ = "series"
    __table_args__ = (UniqueConstraint("study_id", "uid_hash"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"))
    uid_hash: Mapped[str] = mapped_column(String(64))
    modality: Mapped[Optional[str]] = mapped_column(String(16), nullable=True)


class Instance(Base):
    __tablename__ = "instances"
    __table_args__ = (UniqueConstraint("series_id", "uid_hash"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"))
    uid_hash: Mapped[str] = mapped_column(String(64))
    frames: Mapped[int] = mapped_column(Integer, default=1)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    columns: Mapped[int] = mapped_column(Integer, default=0)


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # uuid4 hex: not guessable
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    format: Mapped[str] = mapped_column(String(16))  # dicom | image | nifti
    input_sha256: Mapped[str] = mapped_column(String(64))
    input_size: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime(), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[Optional[str]] = mapped_column(String(300), nullable=True)


class Result(Base):
    __tablename__ = "results"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), unique=True)  # one result per job, ever
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id"))
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))
    model_sha256: Mapped[str] = mapped_column(String(64))
    label: Mapped[Optional[str]] = mapped_column(String(16), nullable=True, index=True)  # normal|benign|malignant
    probabilities: Mapped[Optional[dict]] = mapped_column(JSON, nullable=True)
    kind: Mapped[str] = mapped_column(String(16))  # image | cine | volume
    frames: Mapped[int] = mapped_column(Integer)
    unit: Mapped[str] = mapped_column(String(8))
    max_area: Mapped[float] = mapped_column(Float)
    max_diameter: Mapped[float] = mapped_column(Float)
    summary: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    in_scope: Mapped[Optional[bool]] = mapped_column(Boolean, nullable=True)  # False: no verdict (label NULL)
    scope_reason: Mapped[Optional[str]] = mapped_column(String(200), nullable=True)
    artefacts: Mapped[list["Artefact"]] = relationship(order_by="Artefact.id")
    instance: Mapped[Instance] = relationship()


class Artefact(Base):
    __tablename__ = "artefacts"
    __table_args__ = (UniqueConstraint("result_id", "kind", "frame"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id"))
    kind: Mapped[str] = mapped_column(String(16))
    frame: Mapped[int] = mapped_column(Integer, default=-1)  # -1: whole result
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(Integer)
    media_type: Mapped[str] = mapped_column(String(64))


class AuditEvent(Base):
    """Append-only (database triggers refuse UPDATE/DELETE) and chained (``mac``). Actor is a user name or key prefix,
    target an internal id (result:12, job:ab12..., user:3): never a patient identifier."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[Optional[str]] = mapped_column(String(80), nullable=True)
    ip: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)
    outcome: Mapped[str] = mapped_column(String(16), default="ok")
    detail: Mapped[Optional[str]] = mapped_column(Text, nullable=True)
    mac: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)  # chained HMAC (store/audit.py)
