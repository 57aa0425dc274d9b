"""Login (OAuth2 password flow -> short-lived bearer token) and "who am I"."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import OAuth2PasswordRequestForm

from sonoseg.serve.security import Viewer, issue_token
from sonoseg.store import accounts, audit

router = APIRouter(tags=["auth"])


@router.post("/auth/token")
async def login(request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> dict:
    """Async so that a throttled attempt waits on the event loop, not in a worker thread; the
    database and the (deliberately slow) password hash run in the thread pool."""
    st, settings, limiter = request.app.state.store, request.app.state.settings, request.app.state.limiter
    ip = request.client.host if request.client else "?"
    user = form.username[:64]
    wait = limiter.retry_after(user, ip)
    if wait:
        await run_in_threadpool(_record, st, user, ip, "throttled", None)
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, "too many failed logins; try again later",
                            headers={"Retry-After": str(wait)})
    slow = limiter.delay(user)
    if slow:
        await asyncio.sleep(slow)
    u = await run_in_threadpool(_authenticate, st, form.username, form.password, ip, "slowed" if slow else None)
    if u is None:
        limiter.failed(user, ip)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong user name or password",
                            headers={"WWW-Authenticate": "Bearer"})
    limiter.succeeded(user, ip)
    return {"access_token": issue_token(st.secret, u.username, settings.token_minutes), "token_type": "bearer",
            "expires_in": int(settings.token_minutes * 60)}


def _record(st, user: str, ip: str, outcome: str, detail) -> None:
    with st.session() as s, s.begin():
        audit.record(s, user or "?", "login", None, ip, outcome, detail)


def _authenticate(st, username: str, password: str, ip: str, detail):
    with st.session() as s, s.begin():
        u = accounts.authenticate(s, username, password)
        audit.record(s, username[:64] or "?", "login", None, ip, "ok" if u else "denied", detail)
        return u


@router.get("/me")
def me(p: Viewer) -> dict:
    return {"username": p.username, "role": p.role, "classes": p.allowed(), "via": p.via}
