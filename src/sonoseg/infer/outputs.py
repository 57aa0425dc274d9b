"""Writing what `predict` produces for one input: mask, overlay, measurements JSON, DICOM SEG.

Every writer is atomic and checked (sonoseg.io.safety): an output either exists complete or the call
raises OutputError with the reason; OpenCV's silent ``False`` on a full disk is turned into an error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from sonoseg.errors import OutputError
from sonoseg.io.safety import atomic_path, write_bytes, write_text


def unique_stem(out_dir: Path, path: Path, taken: set[str]) -> str:
    """Output prefix from the input file name (never from DICOM patient attributes); de-duplicated."""
    name = path.name
    for suf in (".nii.gz", ".nii", ".dcm", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"):
        if name.lower().endswith(suf):
            name = name[: -len(suf)]
            break
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "input"
    cand, i = stem, 1
    while cand in taken:
        cand = f"{stem}-{i}"
        i += 1
    taken.add(cand)
    return cand


def write_mask_png(mask: np.ndarray, path: Path, spacing=None) -> Path:
    """Label values (0 background, 1..K), the same convention as the NIfTI masks; pHYs carries the
    pixel spacing when known (view the overlay PNG, or scale the mask, to see it)."""
    from sonoseg.io.spacing import save_png_with_spacing

    m = mask.astype(np.uint8)
    if spacing:
        with atomic_path(path, "mask") as tmp:
            save_png_with_spacing(m, tmp, spacing)
        return path
    return write_png(m, path, "mask")


def write_png(img: np.ndarray, path: Path, what: str) -> Path:
    """``img`` as a PNG at ``path``, written atomically; OutputError naming ``what`` when it cannot be."""
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise OutputError(path, f"cannot encode {what} as PNG")
    return write_bytes(path, buf.tobytes(), what)


def render_overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.35, caption=(), biometry=None,
                   spacing=None, banner=None) -> np.ndarray:
    """RGB uint8 overlay: filled mask + contour, then captions / biometry ellipse / banner."""
    from sonoseg.outputs.overlay import contour_overlay, overlay_image
    from sonoseg.infer.annotate import annotate

    thick = max(1, round(max(mask.shape) / 300))
    rgb = contour_overlay(overlay_image(image, mask, color=None if mask.max() > 1 else (230, 159, 0), alpha=alpha),
                          mask, color=None if mask.max() > 1 else (255, 220, 0), thickness=thick)
    return annotate(np.ascontiguousarray(rgb), caption, biometry, spacing, banner)


def write_overlay(image: np.ndarray, mask: np.ndarray, path: Path, alpha: float = 0.35, **labels) -> Path:
    rgb = render_overlay(image, mask, alpha, **labels)
    return write_png(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), path, "overlay")


def write_json(obj, path: Path) -> Path:
    return write_text(path, json.dumps(obj, indent=2, default=_default), "JSON")


def _default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


def write_mask_nifti(masks: np.ndarray, path: Path, affine: Optional[np.ndarray] = None,
                     spacing: Optional[tuple[float, float]] = None, frame_time_ms: Optional[float] = None) -> Path:
    """Cine frames F x H x W -> 4-D NIfTI (x=col, y=row, z=1, t=frame): pixel spacing on the affine
    diagonal, the frame time in pixdim[4] with xyzt_units = mm + ms (time is time, not a 1 mm z)."""
    import nibabel as nib

    if affine is None:
        affine = np.eye(4)
        if spacing is not None:
            affine[0, 0], affine[1, 1] = float(spacing[1]), float(spacing[0])
    data = np.ascontiguousarray(np.transpose(np.asarray(masks, dtype=np.uint8), (2, 1, 0)))[:, :, None, :]
    img = nib.Nifti1Image(data, affine)
    zooms = list(img.header.get_zooms()[:3]) + [float(frame_time_ms) if frame_time_ms else 0.0]
    img.header.set_zooms(zooms)
    img.header.set_xyzt_units("mm", "msec")
    return save_nifti(img, path)


def save_nifti(img, path: Path) -> Path:
    """nib.save through an atomic temporary name (nibabel picks gzip from the .nii.gz suffix, kept)."""
    import nibabel as nib

    with atomic_path(path, "mask") as tmp:
        nib.save(img, str(tmp))
    return path
