"""Where a segmented study goes: SEGs to a PACS (C-STORE or STOW-RS), and/or the received images into
the results store of ``sonoseg serve`` (as queued jobs its worker segments and its viewer shows)."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from sonoseg.errors import ConfigError
from sonoseg.pacs.config import PacsServer


@dataclass
class PacsSink:
    """Send SEGs to a named server, over ``via`` = dimse | dicomweb (default: DIMSE when configured)."""

    server: PacsServer
    via: Optional[str] = None

    def __post_init__(self):
        self.via = protocol(self.server, self.via)

    @property
    def name(self) -> str:
        return f"{self.server.name} ({self.via})"

    def send(self, segs: Sequence[Path], sources: Sequence[Path]) -> int:
        if not segs:
            return 0
        if self.via == "dicomweb":
            from sonoseg.pacs import dicomweb

            return len(dicomweb.store(self.server, list(segs)))
        from sonoseg.pacs import dimse

        return len(dimse.store(self.server, list(segs)))


def protocol(srv: PacsServer, via: Optional[str], prefer: str = "dimse") -> str:
    """The protocol to use with ``srv``: ``via`` when given (checked), else ``prefer`` when configured."""
    if via not in (None, "auto", "dimse", "dicomweb"):
        raise ConfigError(f"--via must be dimse or dicomweb, not {via}")
    if via in (None, "auto"):
        order = [prefer] + [p for p in ("dimse", "dicomweb") if p != prefer]
        via = next(p for p in order if (srv.has_dimse if p == "dimse" else srv.has_dicomweb))
    if via == "dimse" and not srv.has_dimse:
        raise ConfigError(f"server {srv.name}: no host/port configured for DIMSE")
    if via == "dicomweb" and not srv.has_dicomweb:
        raise ConfigError(f"server {srv.name}: no dicomweb_url configured")
    return via


@dataclass
class StoreSink:
    """Queue the received images as jobs of the results store (same data folder / database URL as
    ``sonoseg serve``): its worker segments them and they appear in the viewer, pseudonymised."""

    data_dir: Path
    db_url: Optional[str] = None
    actor: str = "listener"

    def __post_init__(self):
        from sonoseg.store import Store

        self.store = Store(self.data_dir, self.db_url)
        self.store.migrate()  # not open(): its clean-up would remove the work of a running server
        self.name = "results store"

    def send(self, segs: Sequence[Path], sources: Sequence[Path]) -> int:
        from sonoseg.pacs.segment import is_segmentable
        from sonoseg.store.jobs import enqueue

        files = []
        for src in sources:
            if not is_segmentable(Path(src)):
                continue
            tmp = self.store.work / f"{hashlib.sha256(str(src).encode()).hexdigest()[:16]}.dcm"
            shutil.copyfile(src, tmp)
            files.append(_Spooled(tmp))
        return len(enqueue(self.store, files, self.actor)) if files else 0

    def close(self) -> None:
        self.store.dispose()


class _Spooled:
    fmt = "dicom"

    def __init__(self, path: Path):
        self.path = Path(path)
        h = hashlib.sha256()
        with open(self.path, "rb") as f:
            while b := f.read(1 << 20):
                h.update(b)
        self.sha256, self.size = h.hexdigest(), self.path.stat().st_size
