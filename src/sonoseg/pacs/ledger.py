"""What the listener has already segmented, so that a study sent again gives no second SEG.

PACS routers re-send: a study is forwarded again when a series is added, a rule is re-run, or an
operator pushes "send" twice. Each SEG has a fresh SOP Instance UID, so the PACS would store every
re-delivery as one more SEG of the same image. A result is therefore keyed by the source image (its
SOP Instance UID), what is in it (a hash of its pixel data) and what decides the masks (model version,
threshold, post-processing, TTA, the domain check, overlay captures):

* same key as before: nothing is segmented or sent (the listener logs it);
* same image, changed pixels or another model / settings: a new SEG, which names the SEG it replaces
  (Image Comments in words, and Referenced Instance Sequence with the purpose "Replaced report",
  DCM 121360, for software).

``WORK/ledger.sqlite``, one row per source image. It holds hashes and sonoseg's own SEG UIDs, never
a value copied from the source (the source UID is stored hashed).
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

REPLACED = ("121360", "DCM", "Replaced report")  # CID 7009, purpose of reference to a predecessor
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


@dataclass(frozen=True)
class Fingerprint:
    source: str  # hash of the source SOP Instance UID
    content: str  # hash of its pixel data (as stored) and geometry


@dataclass(frozen=True)
class Entry:
    content: str
    settings: str
    seg_uid: Optional[str]  # None: no SEG (out of the model's scope)
    model: str


def fingerprint(path: str | Path) -> Fingerprint:
    import pydicom

    ds = pydicom.dcmread(path)
    h = hashlib.sha256()
    for kw in ("Rows", "Columns", "NumberOfFrames", "SamplesPerPixel", "BitsAllocated"):
        h.update(f"{kw}={ds.get(kw)};".encode())
    h.update(ds.get("PixelData", b"") or b"")
    return Fingerprint(hashlib.sha256(str(ds.SOPInstanceUID).encode()).hexdigest(), h.hexdigest())


def settings_key(predictor, **extra) -> str:
    """What decides the SEG besides the image: the model and every setting that changes the masks, plus
    the listener's own choices (``extra``: domain check, overlay capture)."""
    parts = [str(predictor.model_version), repr(float(predictor.threshold)), repr(predictor.post),
             repr(tuple(predictor.tta)), repr(sorted(extra.items()))]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


class Ledger:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.execute("CREATE TABLE IF NOT EXISTS results (source TEXT PRIMARY KEY, content TEXT NOT NULL, "
                       "settings TEXT NOT NULL, seg_uid TEXT, model TEXT NOT NULL, at REAL NOT NULL)")

    def _db(self):
        # one short connection per call: the listener's worker and a restarted listener never share one
        return closing(sqlite3.connect(self.path, timeout=30, isolation_level=None))

    def get(self, fp: Fingerprint) -> Optional[Entry]:
        with self._db() as db:
            row = db.execute("SELECT content, settings, seg_uid, model FROM results WHERE source = ?",
                             (fp.source,)).fetchone()
        return Entry(*row) if row else None

    def record(self, items: list[tuple[Fingerprint, Optional[str]]], settings: str, model: str) -> None:
        """(fingerprint, SEG SOP Instance UID or None) for each image segmented, in one transaction."""
        if not items:
            return
        now = time.time()
        with self._db() as db:
            db.execute("BEGIN")
            db.executemany("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?)",
                           [(fp.source, fp.content, settings, uid, model, now) for fp, uid in items])
            db.execute("COMMIT")


def same(entry: Optional[Entry], fp: Fingerprint, settings: str) -> bool:
    return entry is not None and entry.content == fp.content and entry.settings == settings


def why_new(entry: Entry, fp: Fingerprint, model: str) -> str:
    if entry.content != fp.content:
        return "the source image changed"
    return "another model" if entry.model != model else "other settings"


def note_replaces(seg_path: Path, old_uid: str, why: str) -> None:
    """Say in the SEG that it replaces ``old_uid`` (rewritten in place, atomically)."""
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from sonoseg.io.safety import atomic_path

    ds = pydicom.dcmread(seg_path)
    ds.ImageComments = f"Replaces the segmentation {old_uid} ({why})"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = REPLACED
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = SEG_SOP_CLASS, old_uid
    ref.PurposeOfReferenceCodeSequence = Sequence([code])
    ds.ReferencedInstanceSequence = Sequence([ref])
    with atomic_path(seg_path, "DICOM SEG") as tmp:
        ds.save_as(tmp, enforce_file_format=True)
