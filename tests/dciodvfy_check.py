"""dciodvfy (Debian package dicom3tools; .ci/run installs it) on DICOM SEG files the tests write.

``seg_problems(path)`` -> (errors, warnings) as dciodvfy prints them, minus the one error class that
comes from a non-conformant *source* rather than from the SEG: pydicom's ``OBXXXX1A_2frame`` files
declare the single-frame "Ultrasound Image Storage" SOP class yet hold 2 frames, so the SEG's
ReferencedFrameNumber (needed to say which frame a mask belongs to) is reported as "shall not be
present for Referenced SOP Class that is not multi-frame". With a conformant US Multi-frame source
the same SEG has no error (tests/test_dicom_seg.py checks both).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
SINGLE_FRAME_US = "1.2.840.10008.5.1.4.1.1.6.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
_SOURCE_NOT_MULTIFRAME = "Shall not be present for Referenced SOP Class that is not multi-frame - attribute <ReferencedFrameNumber>"


def available() -> bool:
    return shutil.which("dciodvfy") is not None


def is_seg(path: Path) -> bool:
    """A DICOM SEG, or an overlay Secondary Capture sonoseg wrote: both are checked."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True,
                             specific_tags=["SOPClassUID", "Manufacturer", "ManufacturerModelName"])
    except Exception:  # noqa: BLE001 - not a DICOM file: not a SEG
        return False
    return str(ds.get("SOPClassUID", "")) == SEG_SOP_CLASS or (
        str(ds.get("SOPClassUID", "")) == SECONDARY_CAPTURE and str(ds.get("ManufacturerModelName", "")) == "sonoseg overlay")


def _source_classes(path: Path) -> set[str]:
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return {str(i.ReferencedSOPClassUID) for s in ds.get("ReferencedSeriesSequence", [])
            for i in s.ReferencedInstanceSequence}


def seg_problems(path: Path) -> tuple[list[str], list[str]]:
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    lines = [ln.strip() for ln in (out.stdout + out.stderr).splitlines()]
    errors = [ln for ln in lines if ln.startswith("Error")]
    warnings = [ln for ln in lines if ln.startswith("Warning")]
    if SINGLE_FRAME_US in _source_classes(path):
        errors = [e for e in errors if _SOURCE_NOT_MULTIFRAME not in e]
    return errors, warnings
