"""Resource budget checked BEFORE anything is decoded or allocated, and calibration sanity.

A 48 KB RLE file may declare 60000 x 60000 pixels and a broken US-region calibration may ask for a
pixel 1e-5 mm wide: both must be refused (or the calibration dropped) from the header alone, so
memory stays bounded whatever a file declares. Limits are configurable through the environment:

- ``SONOSEG_MAX_FRAME_PIXELS``: rows x columns x samples of ONE frame (default 2**26, e.g. 8192 x 8192
  grey or 4096 x 4096 RGB; one decoded frame then stays under ~0.5 GB even as float64);
- ``SONOSEG_MAX_PIXELS``: rows x columns x frames x samples of the whole input (default 2**30).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Optional

from sonoseg.errors import InputError

DEFAULT_MAX_FRAME_PIXELS = 2**26
DEFAULT_MAX_PIXELS = 2**30
# Plausible physical pixel sizes (mm): 1 µm (microscopy-grade US) .. 50 mm; anisotropy up to 20:1
MIN_SPACING_MM = 1e-3
MAX_SPACING_MM = 50.0
MAX_ASPECT = 20.0


@dataclass(frozen=True)
class Budget:
    max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS
    max_pixels: int = DEFAULT_MAX_PIXELS

    @classmethod
    def from_env(cls) -> "Budget":
        def env(name: str, default: int) -> int:
            raw = os.environ.get(name, "").strip()
            try:
                return max(int(float(raw)), 1) if raw else default
            except ValueError:
                return default

        return cls(env("SONOSEG_MAX_FRAME_PIXELS", DEFAULT_MAX_FRAME_PIXELS), env("SONOSEG_MAX_PIXELS", DEFAULT_MAX_PIXELS))


def check_declared(path, rows: int, columns: int, frames: int = 1, samples: int = 1,
                   budget: Optional[Budget] = None) -> None:
    """Raise InputError when the declared geometry exceeds the budget (nothing decoded yet)."""
    b = budget or Budget.from_env()
    rows, columns, frames, samples = (int(v) for v in (rows, columns, frames or 1, samples or 1))
    per_frame = rows * columns * samples
    if per_frame > b.max_frame_pixels:
        raise InputError(path, f"declared frame size {rows} x {columns} x {samples} samples exceeds the limit of "
                               f"{b.max_frame_pixels} values per frame (SONOSEG_MAX_FRAME_PIXELS)")
    if per_frame * frames > b.max_pixels:
        raise InputError(path, f"declared size {frames} frames of {rows} x {columns} x {samples} exceeds the limit of "
                               f"{b.max_pixels} values per input (SONOSEG_MAX_PIXELS)")


def sane_spacing(spacing) -> tuple[Optional[tuple[float, float]], Optional[str]]:
    """(spacing, None) when (row_mm, col_mm) is finite, positive, plausible and not extremely
    anisotropic; otherwise (None, reason) so the caller drops the calibration with a warning instead
    of measuring in absurd units or resampling onto a giant grid."""
    if spacing is None:
        return None, None
    try:
        sr, sc = (float(v) for v in spacing)
    except (TypeError, ValueError):
        return None, "pixel spacing is not two numbers"
    if not (math.isfinite(sr) and math.isfinite(sc)):
        return None, "pixel spacing is not finite"
    if sr <= 0 or sc <= 0:
        return None, "pixel spacing is not positive"
    if not (MIN_SPACING_MM <= sr <= MAX_SPACING_MM and MIN_SPACING_MM <= sc <= MAX_SPACING_MM):
        return None, (f"pixel spacing {sr:.3g} x {sc:.3g} mm is outside the plausible range "
                      f"{MIN_SPACING_MM:g}..{MAX_SPACING_MM:g} mm")
    if max(sr, sc) / min(sr, sc) > MAX_ASPECT:
        return None, f"pixel spacing {sr:.3g} x {sc:.3g} mm is implausibly anisotropic (> {MAX_ASPECT:g}:1)"
    return (sr, sc), None


def check_finite(path, values, what: str = "image") -> None:
    """Float pixels (NIfTI, rescaled DICOM) must be finite: NaN/Inf would be normalised into a fake
    'lesion'. Integer data cannot hold them and is not scanned."""
    import numpy as np

    arr = np.asarray(values)
    if arr.dtype.kind not in "fc":
        return
    bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
    if bad:
        raise InputError(path, f"{what} has {bad} of {arr.size} values that are NaN or infinite")
