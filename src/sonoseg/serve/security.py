"""Who is calling: short-lived signed access tokens (OAuth2 password flow) or API keys, checked against
the database on every request (a disabled user or revoked key stops working at once); role checks as
FastAPI dependencies."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Annotated, Optional

import jwt
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer

from sonoseg.store import accounts
from sonoseg.store.models import ROLES

TOKEN_URL = "/api/v1/auth/token"
ALGORITHM = "HS256"
oauth2 = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


@dataclass(frozen=True)
class Principal:
    username: str
    role: str
    classes: Optional[tuple[str, ...]]  # None = every class
    via: str  # "token" or "key:<prefix>"

    @property
    def actor(self) -> str:
        return self.username if self.via == "token" else f"{self.username}/{self.via}"

    def allowed(self) -> Optional[list[str]]:
        return list(self.classes) if self.classes is not None else None


def _signing_key(secret: bytes) -> bytes:
    import hashlib
    import hmac

    return hmac.new(secret, b"access-token", hashlib.sha256).digest()


def issue_token(secret: bytes, username: str, minutes: float) -> str:
    now = int(time.time())
    claims = {"sub": username, "iat": now, "exp": now + int(minutes * 60), "jti": secrets.token_hex(8), "typ": "access"}
    return jwt.encode(claims, _signing_key(secret), algorithm=ALGORITHM)


def _unauthorized(detail: str = "not authenticated") -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


def _principal_from_user(u, via: str) -> Principal:
    cls = u.allowed_classes()
    return Principal(u.username, u.role, tuple(cls) if cls is not None else None, via)


def current_principal(request: Request, token: Annotated[Optional[str], Depends(oauth2)],
                      api_key: Annotated[Optional[str], Depends(api_key_header)]) -> Principal:
    """Sync on purpose: FastAPI runs it in the thread pool, so database waits never block the event loop."""
    store = request.app.state.store
    key = api_key or (token if token and token.startswith("sk_") else None)
    with store.reader() as s:
        if key:
            found = accounts.key_user(s, store.secret, key)
            if found is None:
                raise _unauthorized("invalid or revoked API key")
            return _principal_from_user(found[1], f"key:{found[0].prefix}")
        if not token:
            raise _unauthorized()
        try:
            claims = jwt.decode(token, _signing_key(store.secret), algorithms=[ALGORITHM],
                                options={"require": ["exp", "iat", "sub"]})
        except jwt.ExpiredSignatureError:
            raise _unauthorized("token expired") from None
        except jwt.InvalidTokenError:
            raise _unauthorized("invalid token") from None
        if claims.get("typ") != "access":
            raise _unauthorized("invalid token")
        u = accounts.get_user(s, str(claims["sub"]))
        if u is None or u.disabled:
            raise _unauthorized("account disabled")
        return _principal_from_user(u, "token")


def require(role: str):
    """Dependency: the caller must hold ``role`` or a higher one (viewer < operator < admin)."""
    need = ROLES.index(role)

    def check(p: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if ROLES.index(p.role) < need:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"needs the {role} role")
        return p

    return check


Viewer = Annotated[Principal, Depends(require("viewer"))]
Operator = Annotated[Principal, Depends(require("operator"))]
Admin = Annotated[Principal, Depends(require("admin"))]
