"""User accounts (argon2id password hashes) and API keys (random, shown once, stored as keyed hashes)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Iterable, Optional

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from sonoseg.errors import SonosegError
from sonoseg.store.models import CLASSES, ROLES, ApiKey, User, utcnow

_hasher = PasswordHasher()
_DUMMY = _hasher.hash("not-a-real-password")
USERNAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MIN_PASSWORD = 8


class AccountError(SonosegError):
    pass


def _classes(classes: Optional[Iterable[str]]) -> Optional[str]:
    if not classes:
        return None
    cs = [c.strip().lower() for c in classes if c.strip()]
    bad = [c for c in cs if c not in CLASSES]
    if bad:
        raise AccountError(f"unknown class {bad[0]!r} (use {', '.join(CLASSES)})")
    return ",".join(sorted(set(cs))) or None


def create_user(s: Session, username: str, password: str, role: str,
                classes: Optional[Iterable[str]] = None) -> User:
    if not USERNAME.match(username or ""):
        raise AccountError("user name: 1-64 letters, digits, '_', '.', '-'")
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    if len(password or "") < MIN_PASSWORD:
        raise AccountError(f"password must have at least {MIN_PASSWORD} characters")
    if s.scalar(select(User).where(User.username == username)):
        raise AccountError(f"user {username} already exists")
    u = User(username=username, password_hash=_hasher.hash(password), role=role, classes=_classes(classes),
             disabled=False)
    s.add(u)
    s.flush()
    return u


def get_user(s: Session, username: str) -> Optional[User]:
    return s.scalar(select(User).where(User.username == username))


def authenticate(s: Session, username: str, password: str) -> Optional[User]:
    """The user if the password matches and the account is enabled; the same work either way."""
    u = get_user(s, username) if USERNAME.match(username or "") else None
    try:
        ok = _hasher.verify(u.password_hash if u else _DUMMY, password or "")
    except (VerificationError, InvalidHashError):
        ok = False
    if not (u and ok) or u.disabled:
        return None
    if _hasher.check_needs_rehash(u.password_hash):
        u.password_hash = _hasher.hash(password)
    return u


def _keep_an_admin(s: Session, u: User, role: str, disabled: bool) -> None:
    """Refuse a change that would leave no enabled admin (nobody could manage accounts any more).
    The other admins' rows are locked (PostgreSQL), so two admins demoting each other at once cannot
    both pass; SQLite writers are serialised already."""
    if u.role != "admin" or u.disabled or (role == "admin" and not disabled):
        return
    others = s.scalars(select(User.id).where(User.role == "admin", User.disabled.is_(False), User.id != u.id)
                       .with_for_update()).all()
    if not others:
        raise AccountError(f"{u.username} is the last enabled admin: make another user admin first")


def change_user(s: Session, username: str, role: Optional[str] = None, disabled: Optional[bool] = None) -> User:
    """Change a user's role and/or enabled state (None keeps it)."""
    u = get_user(s, username)
    if u is None:
        raise AccountError(f"no user {username}")
    if role is not None and role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    new_role, new_disabled = role or u.role, u.disabled if disabled is None else disabled
    _keep_an_admin(s, u, new_role, new_disabled)
    u.role, u.disabled = new_role, new_disabled
    return u


def set_disabled(s: Session, username: str, disabled: bool = True) -> User:
    return change_user(s, username, disabled=disabled)


def _key_hash(secret: bytes, key: str) -> str:
    return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()


def create_key(s: Session, secret: bytes, username: str, name: str) -> tuple[ApiKey, str]:
    """Returns the row and the full key; the key itself is never stored and cannot be shown again."""
    u = get_user(s, username)
    if u is None:
        raise AccountError(f"no user {username}")
    prefix = secrets.token_hex(4)
    key = f"sk_{prefix}_{secrets.token_urlsafe(32)}"
    k = ApiKey(prefix=prefix, key_hash=_key_hash(secret, key), name=(name or "key")[:64], user_id=u.id)
    s.add(k)
    s.flush()
    return k, key


def key_user(s: Session, secret: bytes, key: str) -> Optional[tuple[ApiKey, User]]:
    parts = (key or "").split("_", 2)
    if len(parts) != 3 or parts[0] != "sk" or not re.fullmatch(r"[0-9a-f]{8}", parts[1]):
        return None
    k = s.scalar(select(ApiKey).where(ApiKey.prefix == parts[1]))
    if k is None or k.revoked_at is not None or not hmac.compare_digest(k.key_hash, _key_hash(secret, key)):
        return None
    if k.user.disabled:
        return None
    return k, k.user


def revoke_key(s: Session, prefix: str) -> ApiKey:
    k = s.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if k is None:
        raise AccountError(f"no key {prefix}")
    if k.revoked_at is None:
        k.revoked_at = utcnow()
    return k
