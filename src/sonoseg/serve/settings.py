"""Server settings: defaults safe for a single workstation, overridable by CLI flags or SONOSEG_* env."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional


def default_data_dir() -> Path:
    return Path(os.environ.get("SONOSEG_HOME", Path.home() / ".local" / "share" / "sonoseg"))


@dataclass
class Settings:
    data_dir: Path
    db_url: Optional[str] = None  # None: SQLite file in data_dir
    token_minutes: float = 15.0  # access tokens are short-lived
    max_upload_bytes: int = 256 * 1024 * 1024  # per request, refused with 413 past this
    max_body_bytes: int = 1024 * 1024  # every other request
    max_files: int = 64
    docs: bool = False  # OpenAPI schema served (behind auth) only when asked
    login_attempts: int = 5  # failed logins per (user name, client), then 429 for that pair ...
    login_window_s: float = 60.0  # ... for this long, doubling with each further failure (serve/throttle.py)
    login_user_ceiling: int = 20  # failures per user name from all clients in the window: then slowed, not refused
    login_slow_s: float = 2.0
    worker: bool = True
    poll_s: float = 0.5
    model: Optional[Path] = None  # None: the shipped default model
    max_view_frames: int = 64  # cine frames rendered for the viewer (evenly sampled beyond this)
    job_memory_mb: float = 512  # estimated peak memory one job may need (serve/guard.py); larger inputs get 413
    accept_broken_audit: bool = False  # start although the audit chain is broken (the break is recorded)
    trusted_proxies: Optional[str] = None  # e.g. "127.0.0.1": the TLS proxy whose X-Forwarded-For names the client
    public_url: Optional[str] = None  # e.g. https://sonoseg.example.org: redirects use it, never the Host header

    def job_limits(self):
        from sonoseg.serve.guard import Limits

        return Limits.of(self.job_memory_mb)

    def login_policy(self):
        from sonoseg.serve.throttle import LoginPolicy

        return LoginPolicy(attempts=self.login_attempts, lock_s=self.login_window_s,
                           user_ceiling=self.login_user_ceiling, slow_s=self.login_slow_s)
    keep_identifiers: bool = False  # also keep each SEG with the source's identifiers (admins only, audited)

    @classmethod
    def from_env(cls, data_dir: Optional[Path] = None, db_url: Optional[str] = None, **kw) -> "Settings":
        env = os.environ
        if db_url and _has_password(db_url):
            print(DB_PASSWORD_WARNING, file=sys.stderr)
        s = cls(Path(data_dir) if data_dir else default_data_dir(), db_url or env.get("SONOSEG_DB_URL") or None, **kw)
        if "SONOSEG_TOKEN_MINUTES" in env:
            s.token_minutes = float(env["SONOSEG_TOKEN_MINUTES"])
        if "SONOSEG_MAX_UPLOAD_MB" in env:
            s.max_upload_bytes = int(float(env["SONOSEG_MAX_UPLOAD_MB"]) * 1024 * 1024)
        if env.get("SONOSEG_DOCS", "").lower() in ("1", "true", "yes"):
            s.docs = True
        if "SONOSEG_JOB_MEMORY_MB" in env:
            s.job_memory_mb = float(env["SONOSEG_JOB_MEMORY_MB"])
        if env.get("SONOSEG_TRUSTED_PROXIES"):
            s.trusted_proxies = env["SONOSEG_TRUSTED_PROXIES"]
        if env.get("SONOSEG_PUBLIC_URL"):
            s.public_url = env["SONOSEG_PUBLIC_URL"]
        if env.get("SONOSEG_KEEP_IDENTIFIERS", "").lower() in ("1", "true", "yes"):
            s.keep_identifiers = True
        if "SONOSEG_MODEL" in env:
            s.model = Path(env["SONOSEG_MODEL"])
        return s


DB_PASSWORD_WARNING = ("warning: a password in --db is visible to every user of this machine (ps); put the URL in "
                       "$SONOSEG_DB_URL, or the password in ~/.pgpass (0600), instead")


def _has_password(url: str) -> bool:
    from sqlalchemy.engine import make_url

    try:
        return bool(make_url(url).password)
    except Exception:  # noqa: BLE001 - not a URL: the store reports that itself
        return False
