"""Uploads become jobs (202 + ids); job status; the worklist. The multipart body is read only after
authentication (no File() parameters, so FastAPI does not parse it before the dependencies run)."""

from __future__ import annotations

from typing import Literal, Optional

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import func, select
from starlette.datastructures import UploadFile

from sonoseg.serve.security import Operator, Viewer
from sonoseg.serve.uploads import UploadRejected, spool, validate
from sonoseg.serve.views import job_view
from sonoseg.store.jobs import enqueue
from sonoseg.store.models import CLASSES, OUT_OF_SCOPE, Job, Result
from sonoseg.store.results import label_clauses

router = APIRouter(tags=["jobs"])
MAX_UPLOAD = 256 * 1024 * 1024  # per-route body limit, replaced by the settings at app creation


def _label(name: str | None) -> str:
    import os

    base = os.path.basename(name or "")[:80]
    return "".join(c if c.isprintable() else "?" for c in base) or "unnamed"


@router.post("/jobs", status_code=status.HTTP_202_ACCEPTED,
             openapi_extra={"requestBody": {"content": {"multipart/form-data": {"schema": {
                 "type": "object", "properties": {"files": {"type": "array", "items": {
                     "type": "string", "format": "binary"}}}}}}, "required": True}})
async def upload(request: Request, p: Operator) -> dict:
    """Upload one or many DICOM / PNG / JPEG / NIfTI files (multipart field ``files``). All are checked
    first: if any is refused, nothing is stored and the reply names it."""
    st, settings = request.app.state.store, request.app.state.settings
    form = await request.form(max_files=settings.max_files, max_fields=settings.max_files + 8)
    files = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
    if not files:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "no files: send them as multipart field 'files'")
    accepted = []
    try:
        for i, f in enumerate(files, 1):
            try:
                sp = await run_in_threadpool(spool, f.file, st.work, settings.max_upload_bytes)
                accepted.append(sp)
                await run_in_threadpool(validate, sp, settings.job_limits())
            except UploadRejected as exc:
                raise HTTPException(exc.status, f"file {i} ({_label(f.filename)}): {exc}") from None
        ids = await run_in_threadpool(enqueue, st, accepted, p.actor, request.client.host if request.client else None)
    except BaseException:
        for sp in accepted:
            sp.path.unlink(missing_ok=True)
        raise
    finally:
        await form.close()
    worker = getattr(request.app.state, "worker", None)
    if worker is not None:
        worker.wake()
    return {"jobs": [{"id": j, "status": "queued", "url": f"/api/v1/jobs/{j}"} for j in ids]}


def _visible(q, p):
    allowed = p.allowed()
    if allowed is not None:  # restricted users see finished jobs of their classes only
        q = q.where(Result.label.in_(allowed))
    return q


@router.get("/jobs")
def list_jobs(request: Request, p: Viewer, status_: Optional[Literal["queued", "running", "done", "failed"]] = Query(None, alias="status"),
              label: Optional[Literal[CLASSES + ("unclassified", OUT_OF_SCOPE)]] = None,  # type: ignore[valid-type]
              offset: int = Query(0, ge=0), limit: int = Query(50, ge=1, le=500)) -> dict:
    """The worklist: jobs with their result's class, newest first, filtered by status and class
    (a class, "unclassified", or "out_of_scope": results without a verdict)."""
    st = request.app.state.store
    q = select(Job, Result).outerjoin(Result, Result.job_id == Job.id)
    q = _visible(q, p)
    if status_:
        q = q.where(Job.status == status_)
    if label:  # a class filter matches finished jobs only; out-of-scope results match no class
        q = q.where(Job.status == "done", *label_clauses(label))
    with st.reader() as s:
        total = s.scalar(select(func.count()).select_from(q.subquery()))
        rows = s.execute(q.order_by(Job.created_at.desc(), Job.id).offset(offset).limit(limit)).all()
        return {"total": total, "offset": offset, "limit": limit, "items": [job_view(j, r) for j, r in rows]}


@router.get("/jobs/{job_id}")
def get_job(request: Request, job_id: str, p: Viewer) -> dict:
    st = request.app.state.store
    if not (len(job_id) == 32 and all(c in "0123456789abcdef" for c in job_id)):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such job")
    with st.reader() as s:
        row = s.execute(_visible(select(Job, Result).outerjoin(Result, Result.job_id == Job.id)
                                 .where(Job.id == job_id), p)).first()
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such job")
        return job_view(*row)
