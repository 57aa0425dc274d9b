"""JSON shapes returned by the API (internal ids and pseudonyms only)."""

from __future__ import annotations

from sonoseg.store.models import ApiKey, AuditEvent, Job, Result, User

API = "/api/v1"


def _iso(t):
    return t.isoformat() if t else None


def job_view(j: Job, result: Result | None = None) -> dict:
    return {"id": j.id, "status": j.status, "format": j.format, "size": j.input_size, "created_by": j.created_by,
            "created_at": _iso(j.created_at), "started_at": _iso(j.started_at), "finished_at": _iso(j.finished_at),
            "attempts": j.attempts, "error": j.error,
            "result_id": result.id if result else None, "label": result.label if result else None,
            "in_scope": result.in_scope if result else None, "scope_reason": result.scope_reason if result else None,
            "url": f"{API}/jobs/{j.id}", "result_url": f"{API}/results/{result.id}" if result else None}


def result_view(r: Result, study: str | None = None, measurements: dict | None = None, raw: bool = False) -> dict:
    """One result. Out of scope (``in_scope`` false): no class, probabilities, sizes or measurements,
    only ``scope_reason``; ``raw`` adds them under ``withheld`` for whoever asks explicitly."""
    files = {a.kind: f"{API}/results/{r.id}/{a.kind}" for a in r.artefacts
             if a.frame < 0 and a.kind not in ("measurements", "seg_original")}
    frames = sorted({a.frame for a in r.artefacts if a.kind == "frame_image"})
    out = {"id": r.id, "job_id": r.job_id, "study": study, "created_at": _iso(r.created_at),
           "model": {"name": r.model_name, "version": r.model_version, "sha256": r.model_sha256},
           "label": r.label, "probabilities": r.probabilities, "kind": r.kind, "frames": r.frames,
           "unit": r.unit, "max_area": r.max_area, "max_diameter": r.max_diameter, "summary": r.summary,
           # the malignancy operating point (issue 22): True/False where the model has one, else None
           "suspicious": (r.summary or {}).get("suspicious"),
           "files": files, "view_frames": frames,
           "checksums": {f"{a.kind}" + (f"[{a.frame}]" if a.frame >= 0 else ""): a.sha256
                         for a in r.artefacts if a.frame < 0 and a.kind != "seg_original"}}
    if measurements is not None:
        out["measurements"] = measurements
    out.update(in_scope=r.in_scope, scope_reason=r.scope_reason)
    if r.in_scope is False:
        withheld = {"max_area": r.max_area, "max_diameter": r.max_diameter, "summary": r.summary,
                    **({"measurements": measurements} if measurements is not None else {})}
        s = r.summary or {}
        withheld.update(label=(s.get("withheld") or {}).get("class"),
                        probabilities=(s.get("withheld") or {}).get("class_probabilities"))
        withheld.update(suspicious=(s.get("withheld") or {}).get("suspicious"))
        out.update(label=None, probabilities=None, max_area=None, max_diameter=None, suspicious=None,
                   summary={k: v for k, v in s.items() if k != "withheld"})
        out.pop("measurements", None)
        if raw:
            out["withheld"] = withheld
    return out


def user_view(u: User) -> dict:
    return {"username": u.username, "role": u.role, "classes": u.allowed_classes(), "disabled": u.disabled,
            "created_at": _iso(u.created_at)}


def key_view(k: ApiKey) -> dict:
    return {"prefix": k.prefix, "name": k.name, "user": k.user.username, "created_at": _iso(k.created_at),
            "revoked_at": _iso(k.revoked_at)}


def audit_view(e: AuditEvent) -> dict:
    return {"id": e.id, "at": _iso(e.at), "actor": e.actor, "action": e.action, "target": e.target, "ip": e.ip,
            "outcome": e.outcome, "detail": e.detail}
