"""Segment the instances of one study with sonoseg's predictor and collect the DICOM SEGs it wrote.

Only images are segmented, chosen by SOP Class (:mod:`sonoseg.infer.sop_class`): SEGs (anyone's), SR,
presentation states, key objects and sonoseg's overlay captures are passed over and counted, so a
listener never segments its own output sent back to it. With a ledger (:mod:`sonoseg.pacs.ledger`),
an image already segmented with the same model and settings is passed over too."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import pydicom

from sonoseg.infer.options import PredictOptions
from sonoseg.infer.sop_class import not_an_image, split_images


@dataclass
class StudyResult:
    study: str  # non-identifying tag (sonoseg.pacs.query.study_tag)
    images: int = 0  # images segmented now
    skipped: int = 0  # not images
    not_images: Counter = field(default_factory=Counter)  # what was skipped, by kind (SEG, SR ...)
    segs: list = field(default_factory=list)  # SEG file paths
    captures: list = field(default_factory=list)  # overlay Secondary Capture paths (overlay_sc)
    failed: list = field(default_factory=list)  # one-line reasons (no identifiers)
    out_of_scope: int = 0
    duplicates: list = field(default_factory=list)  # images already segmented with the same key (not again)
    replaced: int = 0  # new SEGs that replace an earlier one (changed image, model or settings)
    records: list = field(default_factory=list)  # (Fingerprint, SEG UID or None) for the ledger


@dataclass
class SegmentOptions:
    domain: bool = True
    overlay_sc: bool = False
    ledger: object = None  # sonoseg.pacs.ledger.Ledger, or None: segment everything
    settings: str = ""  # sonoseg.pacs.ledger.settings_key of the run

    def predict(self) -> PredictOptions:
        """What predict does with a study's images: one SEG each, the listener's domain check and capture."""
        return PredictOptions(write_seg=True, domain=self.domain, overlay_sc=self.overlay_sc)


def is_segmentable(path: Path) -> bool:
    try:
        pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except Exception:  # noqa: BLE001 - unreadable: not an image to segment
        return False
    return not_an_image(path) is None


def _fingerprint(path: Path):
    """The ledger key of an image; None when it cannot be read (predict then reports why)."""
    from sonoseg.pacs.ledger import fingerprint

    try:
        return fingerprint(path)
    except Exception:  # noqa: BLE001 - unreadable: segmented (and failed) without a ledger entry
        return None


def segment_study(study: str, files: Sequence[Path], out_dir: Path, predictor, opts: SegmentOptions,
                  log: Optional[Callable[[str], None]] = None) -> StudyResult:
    """``predict`` on the study's image instances into ``out_dir`` (masks, overlays, measurements and one
    SEG per instance); returns what was written. One failing instance does not stop the others."""
    from sonoseg.infer.run import predict_inputs
    from sonoseg.pacs import ledger as lg

    res = StudyResult(study)
    images, res.not_images = split_images(files)
    res.skipped = sum(res.not_images.values())
    todo: dict[str, tuple] = {}  # path -> (fingerprint, earlier ledger entry)
    for f in images:
        fp = _fingerprint(f) if opts.ledger is not None else None
        entry = opts.ledger.get(fp) if fp is not None else None
        if lg.same(entry, fp, opts.settings):
            res.duplicates.append(f)
        else:
            todo[str(f)] = (fp, entry)
    res.images = len(todo)
    if not todo:
        return res
    payload = predict_inputs(list(todo), out_dir, opts.predict(), predictor=predictor, log=lambda m: None,
                             notify=lambda m: None)
    model = str(predictor.model_version)
    for i, r in enumerate(payload["results"], 1):
        fp, entry = todo.get(str(r["input"]), (None, None))
        if r.get("overlay_sc"):
            res.captures.append(Path(r["overlay_sc"]))
        if r.get("seg"):
            res.segs.append(Path(r["seg"]))
            if entry is not None and entry.seg_uid:
                lg.note_replaces(Path(r["seg"]), entry.seg_uid, lg.why_new(entry, fp, model))
                res.replaced += 1
            if fp is not None:
                uid = pydicom.dcmread(r["seg"], stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
                res.records.append((fp, str(uid.SOPInstanceUID)))
        elif r.get("ok") and (r.get("summary") or {}).get("in_scope") is False:
            res.out_of_scope += 1  # no verdict: no SEG, no class; the reason only
            if log is not None:
                log(f"{study}: instance {i}: out of scope, not a finding: {r['summary'].get('scope_reason')}")
            if fp is not None:
                res.records.append((fp, None))
        else:
            why = r.get("error") or "; ".join(f"{k}: {v}" for k, v in (r.get("output_errors") or {}).items())
            res.failed.append(f"instance {i}: " + (why or "no SEG written").replace(str(r["input"]), "instance"))
    if log is not None and res.failed:
        for f in res.failed:
            log(f"{study}: {f}")
    return res
