"""Writing a result (all rows + artefacts in one transaction) and querying results by class, date,
model and measurement ranges. Class restrictions are applied here, in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Optional, Sequence

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sonoseg.store.models import OUT_OF_SCOPE, Artefact, Instance, Job, Result, Series, Study, utcnow
from sonoseg.store.pseudonym import InstanceIds

UNCLASSIFIED = "unclassified"


@dataclass
class ArtefactIn:
    kind: str
    media_type: str
    path: Optional[Path] = None
    data: Optional[bytes] = None
    frame: int = -1


@dataclass
class ResultIn:
    model_name: str
    model_version: str
    model_sha256: str
    kind: str
    frames: int
    unit: str
    max_area: float
    max_diameter: float
    summary: dict
    label: Optional[str] = None
    probabilities: Optional[dict] = None
    artefacts: list[ArtefactIn] = field(default_factory=list)
    in_scope: Optional[bool] = None  # False: no label or probabilities may be given (no verdict)
    scope_reason: Optional[str] = None


def _get_or_create(s: Session, model, lookup: dict, extra: dict | None = None):
    row = s.scalar(select(model).filter_by(**lookup))
    if row is not None:
        return row
    try:
        with s.begin_nested():
            row = model(**lookup, **(extra or {}))
            s.add(row)
    except IntegrityError:  # another writer created it meanwhile
        row = s.scalar(select(model).filter_by(**lookup))
    return row


def save_result(store, job_id: str, ids: InstanceIds, r: ResultIn, meta: dict) -> int:
    """Artefact files first (content-addressed, idempotent), then every row and the job's 'done' in
    one transaction. A crash before the commit leaves only unreferenced files, removed at next start."""
    if r.in_scope is False and (r.label is not None or r.probabilities is not None):
        raise ValueError("an out-of-scope result carries no class")
    stored = []
    for a in r.artefacts:
        sha, size = store.blobs.put_file(a.path) if a.path is not None else store.blobs.put_bytes(a.data)
        stored.append((a, sha, size))
    with store.session() as s, s.begin():
        study = _get_or_create(s, Study, {"pseudonym": ids.study_pseudonym}, {"uid_hash": ids.study_hash})
        series = _get_or_create(s, Series, {"study_id": study.id, "uid_hash": ids.series_hash},
                                {"modality": ids.modality})
        inst = _get_or_create(s, Instance, {"series_id": series.id, "uid_hash": ids.instance_hash},
                              {"frames": meta.get("frames", 1), "rows": meta.get("rows", 0),
                               "columns": meta.get("columns", 0)})
        res = Result(job_id=job_id, instance_id=inst.id, model_name=r.model_name, model_version=r.model_version,
                     model_sha256=r.model_sha256, label=r.label, probabilities=r.probabilities, kind=r.kind,
                     frames=r.frames, unit=r.unit, max_area=float(r.max_area), max_diameter=float(r.max_diameter),
                     summary=r.summary, in_scope=r.in_scope, scope_reason=(r.scope_reason or None) and r.scope_reason[:200])
        s.add(res)
        s.flush()
        for a, sha, size in stored:
            s.add(Artefact(result_id=res.id, kind=a.kind, frame=a.frame, sha256=sha, size=size,
                           media_type=a.media_type))
        done = s.execute(update(Job).where(Job.id == job_id, Job.status == "running")
                         .values(status="done", finished_at=utcnow(), error=None)).rowcount
        if done != 1:
            raise RuntimeError(f"job {job_id} is no longer running")  # rolls everything back
        return res.id


@dataclass
class ResultFilter:
    label: Optional[str] = None  # a class, "unclassified" or "out_of_scope"
    model: Optional[str] = None
    since: Optional[datetime] = None
    until: Optional[datetime] = None
    min_diameter: Optional[float] = None
    max_diameter: Optional[float] = None
    min_area: Optional[float] = None
    max_area: Optional[float] = None


def class_clause(allowed: Optional[Sequence[str]]):
    """SQL condition for a user's class restriction (None = no restriction). Restricted users never
    see unclassified results: their class is unknown, so it may be one they may not see."""
    return None if allowed is None else Result.label.in_(list(allowed))


IN_SCOPE = Result.in_scope.is_not(False)  # in scope, or no domain check ran


def label_clauses(label: Optional[str]) -> list:
    """SQL conditions for a class filter: a class, "unclassified" (in scope, no class) or
    "out_of_scope" (no verdict). The worklist and the results listing share them."""
    if label == UNCLASSIFIED:
        return [Result.label.is_(None), IN_SCOPE]
    if label == OUT_OF_SCOPE:
        return [Result.in_scope.is_(False)]
    return [Result.label == label] if label else []


def query_results(s: Session, f: ResultFilter, allowed: Optional[Sequence[str]], offset: int, limit: int):
    q = select(Result)
    conds = []
    cc = class_clause(allowed)
    if cc is not None:
        conds.append(cc)
    conds += label_clauses(f.label)
    if f.model:
        conds.append(Result.model_name == f.model)
    if f.since:
        conds.append(Result.created_at >= f.since)
    if f.until:
        conds.append(Result.created_at < f.until)
    for col, lo, hi in ((Result.max_diameter, f.min_diameter, f.max_diameter), (Result.max_area, f.min_area, f.max_area)):
        if lo is not None or hi is not None:
            conds.append(IN_SCOPE)  # out of scope: its sizes are not findings, no size filter matches it
        if lo is not None:
            conds.append(col >= lo)
        if hi is not None:
            conds.append(col <= hi)
    total = s.scalar(select(func.count()).select_from(Result).where(*conds))
    rows = s.scalars(q.where(*conds).order_by(Result.created_at.desc(), Result.id.desc()).offset(offset).limit(limit)).all()
    return total, rows


def visible_result(s: Session, result_id: int, allowed: Optional[Sequence[str]]) -> Optional[Result]:
    r = s.get(Result, result_id)
    if r is None or (allowed is not None and r.label not in allowed):
        return None
    return r


def artefact(r: Result, kind: str, frame: int = -1) -> Optional[Artefact]:
    return next((a for a in r.artefacts if a.kind == kind and a.frame == frame), None)
