"""Login (OAuth2 password flow -> short-lived bearer token) and "who am I"."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordRequestForm

from sonoseg.serve.security import Viewer, issue_token
from sonoseg.store import accounts, audit

router = APIRouter(tags=["auth"])


@router.post("/auth/token")
def login(request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> dict:
    st, settings, limiter = request.app.state.store, request.app.state.settings, request.app.state.limiter
    ip = request.client.host if request.client else "?"
    keys = (f"ip:{ip}", f"user:{form.username[:64]}")
    wait = limiter.retry_after(*keys)
    if wait:
        with st.session() as s, s.begin():
            audit.record(s, form.username[:64] or "?", "login", None, ip, "throttled")
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, "too many failed logins; try again later",
                            headers={"Retry-After": str(wait)})
    with st.session() as s, s.begin():
        u = accounts.authenticate(s, form.username, form.password)
        audit.record(s, form.username[:64] or "?", "login", None, ip, "ok" if u else "denied")
    if u is None:
        limiter.failed(*keys)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong user name or password",
                            headers={"WWW-Authenticate": "Bearer"})
    return {"access_token": issue_token(st.secret, u.username, settings.token_minutes), "token_type": "bearer",
            "expires_in": int(settings.token_minutes * 60)}


@router.get("/me")
def me(p: Viewer) -> dict:
    return {"username": p.username, "role": p.role, "classes": p.allowed(), "via": p.via}
