"""Which DICOM objects are images to segment, by SOP Class: one rule for predict, listen and the service.

A study pulled from a PACS holds more than images: earlier segmentations (SEG), reports (SR),
presentation states (PR), key object selections (KO), PDFs. Some of them carry Rows / Columns (a SEG
even has pixel data), so "has pixels" is not the test: the SOP Class is. Image storage classes are
segmented; everything else is skipped and counted by kind. sonoseg's own overlay captures (a Secondary
Capture, an image class) are skipped too, so a result sent back is never segmented again.
Files that are not DICOM (PNG, NIfTI ...) are not this module's business: they pass.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable, Optional

SEG_CLASSES = {"1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7"}  # Segmentation, Label Map SEG
KO_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"
# image storage classes whose name does not say "Image Storage"
OTHER_IMAGE_CLASSES = {"1.2.840.10008.5.1.4.1.1.6.2",  # Enhanced US Volume Storage
                       "1.2.840.10008.5.1.4.1.1.13.1.3"}  # Breast Tomosynthesis Image Storage (older name)
_TAGS = ["SOPClassUID", "Manufacturer", "ManufacturerModelName"]


def kind_of_class(sop_class: str) -> Optional[str]:
    """None for an image storage class; else a short name of what it is (SEG, SR, PR, KO, or the class
    name, e.g. "Encapsulated PDF Storage")."""
    from pydicom.uid import UID

    uid = str(sop_class).strip()
    if uid in SEG_CLASSES:
        return "SEG"
    if uid == KO_CLASS:
        return "KO"
    name = UID(uid).name if uid else ""
    if uid in OTHER_IMAGE_CLASSES or "Image Storage" in name:
        return None
    if "SR Storage" in name:
        return "SR"
    if "Presentation State" in name:
        return "PR"
    if name == uid:  # a private or unknown class: let the pixel check decide
        return None
    return name.removesuffix(" Storage") or "non-image object"


def not_an_image(path: str | Path) -> Optional[str]:
    """None when ``path`` is an image to segment (or not DICOM at all: the readers decide, and a broken
    image fails there with its reason); else what it is, in a few words."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_TAGS)
    except Exception:  # noqa: BLE001 - not DICOM (an image file, NIfTI ...): the readers decide
        return None
    kind = kind_of_class(str(ds.get("SOPClassUID", "")))
    if kind is not None:
        return kind
    from sonoseg.outputs.dicom_sc import is_overlay_capture

    return "sonoseg overlay capture" if is_overlay_capture(ds) else None


def split_images(paths: Iterable[str | Path]) -> tuple[list[Path], Counter]:
    """(the images, in order; Counter of what was skipped by kind)."""
    images, skipped = [], Counter()
    for p in paths:
        why = not_an_image(p)
        if why is None:
            images.append(Path(p))
        else:
            skipped[why] += 1
    return images, skipped


def describe_skipped(skipped: Counter) -> str:
    """"3 not images (2 SEG, 1 SR)"."""
    n = sum(skipped.values())
    return f"{n} not image{'s' if n != 1 else ''} ({', '.join(f'{c} {k}' for k, c in skipped.most_common())})"
