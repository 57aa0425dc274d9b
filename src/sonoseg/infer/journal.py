"""A batch leaves a record as it goes: one JSON line per finished input in ``results.jsonl``.

Each line is written, flushed and fsync'ed as soon as an input is done, so a batch stopped after 15
minutes (Ctrl-C, kill, power loss) shows everything it finished. ``--resume`` reads the journal back
and reuses every input whose outputs are all still on disk; the final ``results.json`` is written
atomically at the end (and, marked incomplete, when the run is interrupted).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

JOURNAL = "results.jsonl"
_OUTPUTS = ("mask", "overlay", "measurements", "seg")


def input_key(path: str | Path) -> str:
    return str(Path(path).expanduser().resolve())


class Journal:
    def __init__(self, out: Path, resume: bool = False):
        self.path = Path(out) / JOURNAL
        self.previous: dict[str, dict] = {}
        if resume and self.path.is_file():
            self.previous = read_journal(self.path)
        # a new run starts a new journal; a resumed one rewrites what it reuses, so the file always
        # describes one batch
        self._fh = open(self.path, "w", encoding="utf-8")

    def reusable(self, path: str | Path) -> Optional[dict]:
        """The previous record of ``path`` if it succeeded and every output it lists still exists."""
        rec = self.previous.get(input_key(path))
        if not rec or rec.get("status") not in ("ok", "partial"):
            return None
        if rec.get("status") == "partial":
            return None  # something was missing: do it again
        if not all(Path(rec[k]).is_file() for k in _OUTPUTS if rec.get(k)):
            return None
        return dict(rec, resumed=True)

    def record(self, rec: dict) -> None:
        self._fh.write(json.dumps(rec, default=str) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        try:
            self._fh.close()
        except OSError:
            pass

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_journal(path: Path) -> dict[str, dict]:
    """Records by input; a torn last line (kill during a write) is ignored."""
    out: dict[str, dict] = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and rec.get("input"):
                out[input_key(rec["input"])] = rec
    return out
