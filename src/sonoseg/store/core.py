"""``Store``: one object holding the engine, the artefact folder, the upload spool and the secret."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from sonoseg.store.audit import KEY_INFO, chain_key
from sonoseg.store.blobs import ArtefactError, ArtefactStore
from sonoseg.store.db import READ_ONLY, make_engine, sqlite_url, upgrade
from sonoseg.store.models import Artefact, Job, Result
from sonoseg.store.paths import load_secret, private_dir

DB_FILE = "sonoseg.db"


class Store:
    def __init__(self, data_dir: str | Path, url: Optional[str] = None):
        self.data = private_dir(data_dir)
        self.url = url or sqlite_url(self.data / DB_FILE)
        self.engine = make_engine(self.url)
        self.secret = load_secret(self.data)
        info = {KEY_INFO: chain_key(self.secret)}  # audit.record seals each event with it
        self._sessions = sessionmaker(self.engine, expire_on_commit=False, info=info)
        self._readers = sessionmaker(self.engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False,
                                     info=info)
        self.blobs = ArtefactStore(self.data / "artefacts")
        self.spool = private_dir(self.data / "spool")
        self.work = private_dir(self.data / "work")

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def session(self) -> Session:
        return self._sessions()

    def reader(self) -> Session:
        """A session for reads only (on SQLite it does not take the write lock; never write with it)."""
        return self._readers()

    def migrate(self, revision: str = "head") -> None:
        upgrade(self.engine, revision, chain_key(self.secret))

    def verify_audit(self):
        """The audit chain's report (``ok``, ``first_line()``); see store/audit.py."""
        from sonoseg.store.audit import verify

        with self.reader() as s:
            return verify(s, chain_key(self.secret))

    def open(self) -> dict:
        """Start-up: migrate, then remove what a crash can leave behind (see ``cleanup``)."""
        self.migrate()
        return self.cleanup()

    def cleanup(self) -> dict:
        """Artefact files no row references, spooled uploads of no pending job, stale work folders."""
        import shutil

        with self.session() as s:
            referenced = set(s.scalars(select(Artefact.sha256)))
            pending = set(s.scalars(select(Job.id).where(Job.status.in_(("queued", "running")))))
        blobs = self.blobs.remove_orphans(referenced)
        spool = 0
        for p in self.spool.iterdir():
            if p.name.split(".", 1)[0] not in pending:
                p.unlink(missing_ok=True) if p.is_file() else shutil.rmtree(p, ignore_errors=True)
                spool += 1
        for p in self.work.iterdir():
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        return {"orphan_artefacts": blobs, "orphan_uploads": spool}

    def spool_path(self, job_id: str, suffix: str) -> Path:
        return self.spool / f"{job_id}{suffix}"

    def find_spooled(self, job_id: str) -> Optional[Path]:
        return next(iter(sorted(self.spool.glob(f"{job_id}.*"))), None)

    def integrity_check(self) -> list[str]:
        """Problems found (empty = healthy): database engine check, one result per done job and none
        for others, every artefact present with its checksum."""
        problems = []
        with self.session() as s:
            if self.dialect == "sqlite":
                for (row,) in s.execute(text("PRAGMA integrity_check")):
                    if row != "ok":
                        problems.append(f"sqlite: {row}")
                for row in s.execute(text("PRAGMA foreign_key_check")):
                    problems.append(f"foreign key: {tuple(row)}")
            for job in s.scalars(select(Job)):
                n = s.scalar(select(Result.id).where(Result.job_id == job.id).limit(1))
                if job.status == "done" and n is None:
                    problems.append(f"job {job.id} done without result")
                if job.status != "done" and n is not None:
                    problems.append(f"job {job.id} {job.status} with a result")
                if job.status == "failed" and not job.error:
                    problems.append(f"job {job.id} failed without reason")
            for a in s.scalars(select(Artefact)):
                try:
                    self.blobs.read(a.sha256)
                except ArtefactError as exc:
                    problems.append(str(exc))
        return problems

    def dispose(self) -> None:
        self.engine.dispose()
