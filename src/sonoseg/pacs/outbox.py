"""Delivery state of segmented studies: which destinations already have a study's results, so that a
re-send after a failure goes only to the destinations that failed.

Why a record and not "send everything again": re-sending to a destination that already stored the SEGs
is harmless only if the very same files go (same SOP Instance UIDs). Re-segmenting the study (what a
restarted listener did with the instances it still held) writes SEGs with new UIDs, and the PACS that
had succeeded would store a second, duplicate SEG series; the results store of ``sonoseg serve`` would
queue the images twice. So the listener writes one record per segmented batch before sending anything,
marks each destination done as soon as it has succeeded, re-sends the kept files to the others, and
removes the record (and the received instances) once every destination has them. A record survives a
restart: the next listener delivers it without segmenting again.

``WORK/outbox/<study tag>-<results folder>.json``; written atomically; it names files, never header
values.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional


@dataclass
class Delivery:
    tag: str  # the study's non-identifying tag
    results: str  # predict's output folder of this batch
    segs: list  # files to send: the SEGs (and overlay captures with overlay_sc)
    sources: list  # the received instances (sent to the results store; removed when all is delivered)
    pending: list  # destination names still to deliver to
    done: list = field(default_factory=list)  # destination names that have it
    attempts: int = 0  # failed rounds so far
    next_try: float = 0.0  # wall-clock time (time.time()) of the next attempt
    errors: dict = field(default_factory=dict)  # destination -> last one-line reason

    @property
    def key(self) -> str:
        return f"{self.tag}-{Path(self.results).name}"

    def backoff(self, base_s: float, max_s: float) -> float:
        """Seconds to the next attempt after ``attempts`` failed rounds: base, 2 x base, 4 x base ... max."""
        return min(base_s * 2 ** max(self.attempts - 1, 0), max_s)


class Outbox:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, d: Delivery) -> Path:
        return self.folder / f"{d.key}.json"

    def save(self, d: Delivery) -> None:
        p = self.path(d)
        tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            with open(tmp, "w") as f:
                json.dump(asdict(d), f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, p)
        finally:
            tmp.unlink(missing_ok=True)

    def remove(self, d: Delivery) -> None:
        self.path(d).unlink(missing_ok=True)

    def load(self, log=None) -> list[Delivery]:
        """Every record left on disk; an unreadable one is reported and set aside (renamed ``.bad``)."""
        out = []
        for p in sorted(self.folder.glob("*.json")):
            try:
                out.append(Delivery(**json.loads(p.read_text())))
            except (OSError, ValueError, TypeError) as exc:
                if log is not None:
                    log(f"{p.name}: unreadable delivery record ({type(exc).__name__}); set aside")
                p.rename(p.with_suffix(".bad"))
        for f in self.folder.glob(".*.part"):
            f.unlink(missing_ok=True)
        return out

    @staticmethod
    def due(deliveries, now: Optional[float] = None) -> list[Delivery]:
        now = time.time() if now is None else now
        return [d for d in deliveries if d.next_try <= now]
