"""Segment the instances of one study with sonoseg's predictor and collect the DICOM SEGs it wrote.

Only images are segmented: instances without pixel data (SR, presentation states), SEGs (anyone's) and
sonoseg's overlay captures are passed over, so a listener never segments its own output sent back to it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import pydicom

from sonoseg.infer.dicom_sc import is_overlay_capture
from sonoseg.pacs.files import SEG_SOP_CLASS


@dataclass
class StudyResult:
    study: str  # non-identifying tag (sonoseg.pacs.query.study_tag)
    images: int = 0
    skipped: int = 0
    segs: list = field(default_factory=list)  # SEG file paths
    captures: list = field(default_factory=list)  # overlay Secondary Capture paths (overlay_sc)
    failed: list = field(default_factory=list)  # one-line reasons (no identifiers)
    out_of_scope: int = 0


def is_segmentable(path: Path) -> bool:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID", "Rows", "Columns",
                                                                           "Manufacturer", "ManufacturerModelName"])
    except Exception:  # noqa: BLE001 - unreadable: not an image to segment
        return False
    return (str(ds.get("SOPClassUID", "")) != SEG_SOP_CLASS and not is_overlay_capture(ds)
            and bool(ds.get("Rows")) and bool(ds.get("Columns")))


def segment_study(study: str, files: Sequence[Path], out_dir: Path, predictor, *, domain: bool = True,
                  log: Optional[Callable[[str], None]] = None, overlay_sc: bool = False) -> StudyResult:
    """``predict`` on the study's image instances into ``out_dir`` (masks, overlays, measurements and one
    SEG per instance); returns what was written. One failing instance does not stop the others."""
    from sonoseg.infer.run import predict_inputs

    res = StudyResult(study)
    images = [Path(f) for f in files if is_segmentable(Path(f))]
    res.images, res.skipped = len(images), len(files) - len(images)
    if not images:
        return res
    payload = predict_inputs(images, out_dir, predictor=predictor, write_seg=True, domain=domain,
                             log=lambda m: None, notify=lambda m: None, overlay_sc=overlay_sc)
    for i, r in enumerate(payload["results"], 1):
        if r.get("overlay_sc"):
            res.captures.append(Path(r["overlay_sc"]))
        if r.get("seg"):
            res.segs.append(Path(r["seg"]))
        elif r.get("ok") and (r.get("summary") or {}).get("in_scope") is False:
            res.out_of_scope += 1  # no verdict: no SEG, no class; the reason only
            if log is not None:
                log(f"{study}: instance {i}: out of scope, not a finding: {r['summary'].get('scope_reason')}")
        else:
            why = r.get("error") or "; ".join(f"{k}: {v}" for k, v in (r.get("output_errors") or {}).items())
            res.failed.append(f"instance {i}: " + (why or "no SEG written").replace(str(r["input"]), "instance"))
    if log is not None and res.failed:
        for f in res.failed:
            log(f"{study}: {f}")
    return res
