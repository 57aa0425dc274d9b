"""dciodvfy (Debian package dicom3tools; .ci/run installs it) on DICOM SEG files the tests write.

``seg_problems(path)`` -> (errors, warnings) as dciodvfy prints them. No allowance: a SEG of a source
stored under a single-frame SOP Class with several frames (pydicom-data's ``OBXXXX1A_2frame``) states
its frames without ReferencedFrameNumber (issue 27; sonoseg.outputs.dicom_seg), so it passes as is.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


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


def seg_problems(path: Path) -> tuple[list[str], list[str]]:
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    lines = [ln.strip() for ln in (out.stdout + out.stderr).splitlines()]
    errors = [ln for ln in lines if ln.startswith("Error")]
    warnings = [ln for ln in lines if ln.startswith("Warning")]
    return errors, warnings


def own_problems(seg: Path, source: Path) -> tuple[list[str], list[str]]:
    """(errors, warnings) of a SEG that do not come from its source image: a line dciodvfy also prints
    for the source itself (e.g. its empty Study Date, a retired Person Name form) is the source's, and
    so is an illegal UID the SEG must copy or reference (the study's, a referenced instance's)."""
    src_lines = set(sum(seg_problems(source), []))
    src_text = "\n".join(src_lines)

    def own(line: str) -> bool:
        if line in src_lines:
            return False
        if "Illegal root for UID" in line and '"' in line:
            return line.split('"')[1] not in src_text
        return True

    errors, warnings = seg_problems(seg)
    return [e for e in errors if own(e)], [w for w in warnings if own(w)]
