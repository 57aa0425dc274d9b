"""Administration: users, API keys (shown once), the audit trail. Admin role only."""

from __future__ import annotations

from typing import Literal, Optional

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from sonoseg.serve.security import Admin
from sonoseg.serve.views import audit_view, key_view, user_view
from sonoseg.store import accounts, audit
from sonoseg.store.models import ApiKey, AuditEvent, User

router = APIRouter(tags=["admin"])
Name = Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$")


class NewUser(BaseModel):
    username: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    password: str = Field(min_length=accounts.MIN_PASSWORD, max_length=256)
    role: Literal["viewer", "operator", "admin"]
    classes: Optional[list[Literal["normal", "benign", "malignant"]]] = None


class UserChange(BaseModel):
    disabled: Optional[bool] = None
    role: Optional[Literal["viewer", "operator", "admin"]] = None


class NewKey(BaseModel):
    username: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    name: str = Field(default="key", max_length=64)


def _ip(request: Request):
    return request.client.host if request.client else None


@router.get("/users")
def list_users(request: Request, p: Admin) -> dict:
    with request.app.state.store.session() as s:
        return {"items": [user_view(u) for u in s.scalars(select(User).order_by(User.id))]}


@router.post("/users", status_code=status.HTTP_201_CREATED)
def add_user(request: Request, body: NewUser, p: Admin) -> dict:
    with request.app.state.store.session() as s, s.begin():
        try:
            u = accounts.create_user(s, body.username, body.password, body.role, body.classes)
        except accounts.AccountError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT if "exists" in str(exc) else 422, str(exc)) from None
        audit.record(s, p.actor, "user:add", f"user:{u.id}", _ip(request), detail=f"role={body.role}")
        return user_view(u)


@router.patch("/users/{username}")
def change_user(request: Request, body: UserChange, p: Admin, username: str = Name) -> dict:
    with request.app.state.store.session() as s, s.begin():
        if accounts.get_user(s, username) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such user")
        try:
            u = accounts.change_user(s, username, body.role, body.disabled)
        except accounts.AccountError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        audit.record(s, p.actor, "user:change", f"user:{u.id}", _ip(request),
                     detail=body.model_dump_json(exclude_none=True))
        return user_view(u)


@router.get("/keys")
def list_keys(request: Request, p: Admin) -> dict:
    with request.app.state.store.session() as s:
        return {"items": [key_view(k) for k in s.scalars(select(ApiKey).order_by(ApiKey.id))]}


@router.post("/keys", status_code=status.HTTP_201_CREATED)
def create_key(request: Request, body: NewKey, p: Admin) -> dict:
    st = request.app.state.store
    with st.session() as s, s.begin():
        try:
            k, key = accounts.create_key(s, st.secret, body.username, body.name)
        except accounts.AccountError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
        audit.record(s, p.actor, "key:create", f"key:{k.prefix}", _ip(request))
        return {**key_view(k), "key": key, "note": "shown once: store it now"}


@router.delete("/keys/{prefix}")
def revoke_key(request: Request, p: Admin, prefix: str = Path(pattern=r"^[0-9a-f]{8}$")) -> dict:
    with request.app.state.store.session() as s, s.begin():
        try:
            k = accounts.revoke_key(s, prefix)
        except accounts.AccountError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
        audit.record(s, p.actor, "key:revoke", f"key:{k.prefix}", _ip(request))
        return key_view(k)


@router.get("/audit")
def list_audit(request: Request, p: Admin, actor: Optional[str] = Query(None, pattern=r"^[A-Za-z0-9_.:/-]{1,80}$"),
               action: Optional[str] = Query(None, pattern=r"^[a-z:]{1,32}$"),
               offset: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=1000)) -> dict:
    with request.app.state.store.session() as s, s.begin():
        q = select(AuditEvent)
        if actor:
            q = q.where(AuditEvent.actor == actor)
        if action:
            q = q.where(AuditEvent.action == action)
        total = s.scalar(select(func.count()).select_from(q.subquery()))
        items = [audit_view(e) for e in s.scalars(q.order_by(AuditEvent.id.desc()).offset(offset).limit(limit))]
        audit.record(s, p.actor, "audit:read", None, _ip(request))
    return {"total": total, "offset": offset, "limit": limit, "items": items}
