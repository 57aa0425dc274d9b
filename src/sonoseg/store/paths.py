"""The data folder: database file, artefacts, upload spool and the server secret, all owner-only."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

SECRET_ENV = "SONOSEG_SECRET"


def private_dir(path: str | Path) -> Path:
    """Create (or tighten) a folder readable by its owner only."""
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(p, 0o700)
    return p


def private_file(path: Path) -> Path:
    """Create an empty file with mode 0600 if absent (so SQLite's -wal/-shm inherit 0600 too)."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)
    return path


def load_secret(data_dir: str | Path) -> bytes:
    """The signing/hashing key: $SONOSEG_SECRET, else ``secret.key`` in the data folder, generated on
    first start (owner-only). Never a hard-coded default."""
    env = os.environ.get(SECRET_ENV)
    if env:
        if len(env) < 32:
            raise ValueError(f"{SECRET_ENV} must be at least 32 characters")
        return env.encode()
    p = private_dir(data_dir) / "secret.key"
    if not p.exists():
        fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    return p.read_text().strip().encode()
