"""Results: filtered listing with pagination, one result as JSON, and its files (checksum-verified on
every read). Class restrictions hide results as if they did not exist (404, nothing leaked)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Literal, Optional

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from pydantic import BaseModel, Field

from sonoseg.serve.security import Principal, Viewer
from sonoseg.serve.views import result_view
from sonoseg.store import audit
from sonoseg.store.blobs import ArtefactError
from sonoseg.store.models import CLASSES, OUT_OF_SCOPE, Instance, Series, Study
from sonoseg.store.results import ResultFilter, artefact, query_results, visible_result

router = APIRouter(tags=["results"])
LabelQ = Optional[Literal[CLASSES + ("unclassified", OUT_OF_SCOPE)]]  # type: ignore[valid-type]
FILES = {"mask": None, "overlay": "overlay.png", "seg": "seg.dcm", "measurements": "measurements.json"}


def _ip(request: Request):
    return request.client.host if request.client else None


def _study(s, r) -> Optional[str]:
    return s.query(Study.pseudonym).join(Series, Series.study_id == Study.id).join(
        Instance, Instance.series_id == Series.id).filter(Instance.id == r.instance_id).scalar()


class ResultQuery(BaseModel):
    """The listing's query parameters, checked in one place (a bad value answers 422)."""

    label: LabelQ = None
    model: Optional[str] = Field(None, pattern=r"^[A-Za-z0-9_.+-]{1,128}$")
    since: Optional[datetime] = None
    until: Optional[datetime] = None
    min_diameter: Optional[float] = Field(None, ge=0)
    max_diameter: Optional[float] = Field(None, ge=0)
    min_area: Optional[float] = Field(None, ge=0)
    max_area: Optional[float] = Field(None, ge=0)
    offset: int = Field(0, ge=0)
    limit: int = Field(50, ge=1, le=500)

    def filter(self) -> ResultFilter:
        return ResultFilter(self.label, self.model, self.since, self.until, self.min_diameter, self.max_diameter,
                            self.min_area, self.max_area)


@router.get("/results")
def list_results(request: Request, p: Viewer, q: Annotated[ResultQuery, Query()]) -> dict:
    st = request.app.state.store
    offset, limit = q.offset, q.limit
    with st.reader() as s:
        total, rows = query_results(s, q.filter(), p.allowed(), offset, limit)
        items = [result_view(r, _study(s, r)) for r in rows]
    return {"total": total, "offset": offset, "limit": limit, "items": items}


def _load(request: Request, p: Principal, result_id: int, s):
    r = visible_result(s, result_id, p.allowed())
    if r is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such result")
    return r


def _read(request: Request, sha: str) -> bytes:
    try:
        return request.app.state.store.blobs.read(sha)
    except ArtefactError as exc:
        raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, f"stored file unusable: {exc}") from None


@router.get("/results/{result_id}")
def get_result(request: Request, p: Viewer, result_id: int = Path(ge=1, le=2**62),
               raw: bool = Query(False, description="out of scope: add the withheld class, probabilities and "
                                                     "measurements under 'withheld' (not findings)")) -> dict:
    st = request.app.state.store
    with st.session() as s, s.begin():
        r = _load(request, p, result_id, s)
        m = artefact(r, "measurements")
        meas = json.loads(_read(request, m.sha256)) if m else None
        audit.record(s, p.actor, "read", f"result:{r.id}", _ip(request), detail="raw" if raw else None)
        return result_view(r, _study(s, r), meas, raw=raw)


@router.get("/results/{result_id}/{kind}")
def get_file(request: Request, p: Viewer, kind: Literal["mask", "overlay", "seg", "measurements"],
             result_id: int = Path(ge=1, le=2**62),
             identifiers: Literal["removed", "original"] = Query(
                 "removed", description="seg only: 'original' = the SEG with the source's identifiers (admin "
                                        "role, server kept them: --keep-identifiers; audited)")) -> Response:
    st = request.app.state.store
    original = identifiers == "original"
    if original and (kind != "seg" or p.role != "admin"):
        with st.session() as s, s.begin():
            audit.record(s, p.actor, "download:seg:original", f"result:{result_id}", _ip(request), "denied")
        raise HTTPException(status.HTTP_403_FORBIDDEN if kind == "seg" else 422,
                            "original identifiers: the SEG only, for the admin role")
    with st.session() as s, s.begin():
        r = _load(request, p, result_id, s)
        a = artefact(r, "seg_original" if original else kind)
        if a is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no SEG with original identifiers kept for this result "
                                "(server setting --keep-identifiers)" if original else f"this result has no {kind}")
        audit.record(s, p.actor, "download:seg:original" if original else f"download:{kind}", f"result:{r.id}",
                     _ip(request))
    name = FILES[kind] or ("mask.png" if a.media_type == "image/png" else "mask.nii.gz")
    return Response(_read(request, a.sha256), media_type=a.media_type,
                    headers={"Content-Disposition": f'attachment; filename="result-{r.id}-{name}"',
                             "X-Checksum-SHA256": a.sha256})


@router.get("/results/{result_id}/frames/{frame}/{layer}")
def get_frame(request: Request, p: Viewer, layer: Literal["image", "mask"], result_id: int = Path(ge=1, le=2**62),
              frame: int = Path(ge=0, le=100000)) -> Response:
    """One rendered frame for the viewer: the source picture or the mask layer (transparent PNG)."""
    st = request.app.state.store
    with st.reader() as s:
        r = _load(request, p, result_id, s)
        a = artefact(r, f"frame_{layer}", frame)
        if a is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such frame")
    return Response(_read(request, a.sha256), media_type="image/png")  # patient pixels: the API's no-store only
