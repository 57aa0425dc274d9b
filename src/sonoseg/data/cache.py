"""On-disk caches shared by the data stage: per-file perceptual hashes and preprocessed arrays.

Entries are keyed by what makes them stale (absolute path, size, mtime, settings), never by dataset
name, so one cache directory can serve every dataset. Writes are atomic (temp file + rename) so that
DataLoader workers or parallel runs never read a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Optional

import numpy as np

ENV_CACHE_DIR = "SONOSEG_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$SONOSEG_CACHE_DIR``, else ``$XDG_CACHE_HOME/sonoseg``, else ``~/.cache/sonoseg``."""
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "sonoseg"


def file_fingerprint(path: str | Path) -> dict[str, Any]:
    """Identity of a file's current content without reading it: resolved path, size, mtime (ns)."""
    p = Path(path).resolve()
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def stable_key(*parts: Any) -> str:
    """SHA-256 (hex, 32 chars) of a JSON rendering of ``parts``; dict key order does not matter."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _atomic_target(path: Path) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    path = Path(path)
    fd, tmp = _atomic_target(path)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, separators=(",", ":"))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: str | Path) -> Optional[Any]:
    """The JSON content, or None when missing or corrupt (a cache miss, never an error)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def atomic_save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """Uncompressed .npz: loading is a plain read, which is the point of the cache."""
    path = Path(path)
    fd, tmp = _atomic_target(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_npz(path: str | Path) -> Optional[dict[str, np.ndarray]]:
    """All arrays of an .npz, or None when missing or unreadable (treated as a cache miss)."""
    try:
        with np.load(Path(path), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError, EOFError):
        return None


def preprocessed_cache_dir(configured: Optional[str | Path] = None) -> Path:
    """Where preprocessed training arrays are cached: ``data.cache_dir`` when set, else
    ``default_cache_dir()/preprocessed`` -- never inside the dataset, which may be read-only or shared.
    Trainer and exporter use this one rule so export calibrates on exactly the training arrays."""
    return Path(configured).expanduser() if configured else default_cache_dir() / "preprocessed"
