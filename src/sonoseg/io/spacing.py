"""Pixel spacing for every input, and where it came from.

Precedence (first that applies wins; the winner's name is recorded as ``spacing_source`` in every
output):

1. ``--spacing ROW_MM[,COL_MM]`` given on the command line (``"cli --spacing"``);
2. a ``spacing`` column (``ROW_MM`` or ``ROW_MM,COL_MM``) or ``spacing_row``/``spacing_col`` columns
   in a dataset's ``labels.csv`` (``"labels.csv"``) or a ``--spacing-file`` (``"spacing file"``), per
   image by file stem (:mod:`sonoseg.data.spacing_table`);
3. the file itself: DICOM PixelSpacing / SequenceOfUltrasoundRegions / ImagerPixelSpacing, NIfTI
   pixdim, PNG ``pHYs`` (``"PNG pHYs"``);
4. none: sizes are reported in pixels.

PNG pHYs is trusted only when its unit is the metre and its value is not one of the screen/print
defaults image editors stamp on every file (72, 96, 150, 300, 600 dpi); those say nothing about the
anatomy and would silently turn pixels into wrong millimetres.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

from sonoseg.errors import ConfigError

CLI_SOURCE = "cli --spacing"
LABELS_SOURCE = "labels.csv"
PNG_SOURCE = "PNG pHYs"
_DEFAULT_DPI = (72, 96, 150, 300, 600)


def parse_spacing(text: str | Sequence[float] | None) -> Optional[tuple[float, float]]:
    """``"0.1"`` -> (0.1, 0.1); ``"0.1,0.2"`` (row, col mm) -> (0.1, 0.2); None/"" -> None."""
    if text is None:
        return None
    if isinstance(text, str):
        parts = [p for p in text.replace(";", ",").replace("x", ",").split(",") if p.strip()]
        if not parts:
            return None
        try:
            vals = [float(p) for p in parts]
        except ValueError:
            raise ConfigError(f"spacing {text!r}: expected ROW_MM or ROW_MM,COL_MM (numbers in mm)") from None
    else:
        vals = [float(v) for v in text]
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or not all(math.isfinite(v) and v > 0 for v in vals):
        raise ConfigError(f"spacing {text!r}: expected one or two positive numbers in mm (ROW_MM[,COL_MM])")
    return (vals[0], vals[1])


def png_phys_spacing(info: dict) -> Optional[tuple[float, float]]:
    """(row_mm, col_mm) from the ``dpi`` Pillow reads out of a PNG pHYs chunk (unit = metre), or None."""
    dpi = info.get("dpi")
    if not dpi or len(dpi) != 2:
        return None
    dx, dy = (float(v) for v in dpi)
    if not (dx > 0 and dy > 0):
        return None
    if any(abs(dx - d) < 0.05 and abs(dy - d) < 0.05 for d in _DEFAULT_DPI):
        return None
    return (round(25.4 / dy, 4), round(25.4 / dx, 4))  # pHYs is integer px/m: ~1e-4 relative


def resolve_spacing(file_spacing, file_source: Optional[str], override=None, table_spacing=None,
                    table_source: str = LABELS_SOURCE):
    """``(spacing, source)`` by the precedence above; ``(None, None)`` when nothing is known.
    ``table_source`` names the table (labels.csv or a --spacing-file, :mod:`sonoseg.data.spacing_table`)."""
    if override is not None:
        return parse_spacing(override), CLI_SOURCE
    if table_spacing is not None:
        return parse_spacing(table_spacing), table_source
    if file_spacing is not None:
        return (float(file_spacing[0]), float(file_spacing[1])), file_source
    return None, None


def save_png_with_spacing(image, path: str | Path, spacing: tuple[float, float]) -> Path:
    """Write a greyscale/RGB uint8 image as PNG with a pHYs chunk for ``spacing`` (row, col mm)."""
    import numpy as np
    from PIL import Image

    sr, sc = parse_spacing(spacing)
    Image.fromarray(np.asarray(image)).save(str(path), dpi=(25.4 / sc, 25.4 / sr))
    return Path(path)
