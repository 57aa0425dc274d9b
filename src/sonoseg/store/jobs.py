"""The persistent job queue: a row per upload; claimed atomically; recovered after a crash."""

from __future__ import annotations

from typing import Optional

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from sonoseg.store import audit
from sonoseg.store.models import Job, utcnow

MAX_ATTEMPTS = 2


def enqueue(store, files: list, actor: str, ip: Optional[str] = None) -> list[str]:
    """Files in the store's work folder (objects with ``path``, ``fmt``, ``sha256``, ``size``) -> queued
    job rows, in one transaction. Each file is moved to its job's spool name first, so a crash leaves
    at worst an unreferenced file, removed at the next start."""
    import uuid

    ids = []
    with store.session() as s, s.begin():
        for sp in files:
            jid = uuid.uuid4().hex
            dest = store.spool_path(jid, "".join(sp.path.suffixes))
            sp.path.rename(dest)
            sp.path = dest
            s.add(Job(id=jid, status="queued", format=sp.fmt, input_sha256=sp.sha256, input_size=sp.size,
                      created_by=actor, attempts=0))
            audit.record(s, actor, "upload", f"job:{jid}", ip)
            ids.append(jid)
    return ids


def claim_next(s: Session) -> Optional[Job]:
    """Mark the oldest queued job running and return it; None when the queue is empty. The
    conditional UPDATE makes two workers never claim the same job."""
    for job_id in s.scalars(select(Job.id).where(Job.status == "queued").order_by(Job.created_at, Job.id).limit(5)):
        res = s.execute(update(Job).where(Job.id == job_id, Job.status == "queued")
                        .values(status="running", started_at=utcnow(), attempts=Job.attempts + 1))
        if res.rowcount == 1:
            s.commit()
            return s.get(Job, job_id)
    s.rollback()
    return None


def fail(s: Session, job_id: str, reason: str) -> None:
    s.execute(update(Job).where(Job.id == job_id, Job.status.in_(("queued", "running")))
              .values(status="failed", error=(reason.splitlines()[0] if reason else "failed")[:300],
                      finished_at=utcnow()))


def recover(s: Session, max_attempts: int = MAX_ATTEMPTS, retry=None) -> dict:
    """At start-up: jobs left 'running' by a stopped server are re-queued, or failed with a reason
    once they have been tried ``max_attempts`` times (a job that kills the server is not retried forever)
    or when ``retry(job)`` gives a reason not to retry it (e.g. it may have exhausted memory)."""
    requeued = failed = 0
    for job in s.scalars(select(Job).where(Job.status == "running")).all():
        why = (f"interrupted by a server stop {max_attempts} times" if job.attempts >= max_attempts
               else retry(job) if retry is not None else None)
        if why:
            job.status, job.finished_at, job.error = "failed", utcnow(), why[:300]
            failed += 1
        else:
            job.status, job.started_at = "queued", None
            requeued += 1
    s.commit()
    return {"requeued": requeued, "failed": failed}
