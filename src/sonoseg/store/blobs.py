"""Content-addressed artefact folder: files named by their SHA-256, verified on every read.

Writes go to a temporary file in the same folder, are fsynced, then renamed into place, so a file
under its final name is always complete. Names are validated hex digests: no path can escape.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Iterable

from sonoseg.errors import SonosegError
from sonoseg.store.paths import private_dir

_HEX = re.compile(r"^[0-9a-f]{64}$")


class ArtefactError(SonosegError):
    """Missing or corrupted artefact (checksum mismatch)."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


class ArtefactStore:
    def __init__(self, root: str | Path):
        self.root = private_dir(root)
        self.tmp = private_dir(self.root / "tmp")

    def path(self, sha: str) -> Path:
        if not isinstance(sha, str) or not _HEX.match(sha):
            raise ArtefactError(f"invalid artefact name {sha!r:.80}")
        return self.root / sha[:2] / sha

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        sha = hashlib.sha256(data).hexdigest()
        return self._commit(sha, lambda f: f.write(data)), len(data)

    def put_file(self, src: Path) -> tuple[str, int]:
        sha = sha256_file(src)
        with open(src, "rb") as s:
            self._commit(sha, lambda f: _copy(s, f))
        return sha, src.stat().st_size

    def _commit(self, sha: str, write) -> str:
        dest = self.path(sha)
        if dest.exists():
            return sha  # content-addressed: same bytes, same file
        private_dir(dest.parent)
        fd, tmp = tempfile.mkstemp(dir=self.tmp, prefix=sha[:8], suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return sha

    def read(self, sha: str) -> bytes:
        """The bytes, after checking them against their name (= the checksum in the database)."""
        p = self.path(sha)
        if not p.is_file():
            raise ArtefactError(f"artefact {sha[:12]} missing")
        data = p.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha:
            raise ArtefactError(f"artefact {sha[:12]} failed its checksum")
        return data

    def all_names(self) -> Iterable[str]:
        for d in self.root.iterdir():
            if d.is_dir() and len(d.name) == 2:
                for f in d.iterdir():
                    if _HEX.match(f.name):
                        yield f.name

    def remove_orphans(self, referenced: set[str], min_age_s: float = 0.0) -> int:
        """Delete artefacts no row references and leftover temporary files (a crash mid-write)."""
        now, n = time.time(), 0
        for name in list(self.all_names()):
            p = self.path(name)
            if name not in referenced and now - p.stat().st_mtime >= min_age_s:
                p.unlink(missing_ok=True)
                n += 1
        for t in self.tmp.iterdir():
            if now - t.stat().st_mtime >= min_age_s:
                t.unlink(missing_ok=True)
                n += 1
        return n


def _copy(src, dst, chunk: int = 1 << 20) -> None:
    while b := src.read(chunk):
        dst.write(b)
