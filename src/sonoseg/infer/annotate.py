"""Labels drawn onto overlays: caption lines, the fitted biometry ellipse with its BPD/OFD callipers,
and an out-of-scope banner. Pure drawing on an RGB uint8 array (OpenCV)."""

from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np

_ELLIPSE = (0, 200, 255)
_CALLIPER = (255, 80, 200)
_BANNER = (200, 0, 0)


def _text(rgb: np.ndarray, line: str, org: tuple[int, int], scale: float, thick: int, color=(255, 255, 255)) -> None:
    # dark outline = the same text shifted one pixel each way: a thicker stroke would not do, since
    # OpenCV advances each glyph by the stroke thickness and the outline would drift off the text
    for dx, dy in ((-1, -1), (-1, 1), (1, -1), (1, 1), (0, -1), (0, 1), (-1, 0), (1, 0)):
        cv2.putText(rgb, line, (org[0] + dx, org[1] + dy), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick, cv2.LINE_AA)
    cv2.putText(rgb, line, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)


def _pts(rc: np.ndarray) -> np.ndarray:
    """[row, col] float -> OpenCV (x, y) int points with 4 fractional bits (shift=4)."""
    return np.round(np.asarray(rc, dtype=float)[:, ::-1] * 16).astype(np.int32)


def annotate(rgb: np.ndarray, caption: Sequence[str] = (), biometry: Optional[dict] = None,
             spacing=None, banner: Optional[str] = None) -> np.ndarray:
    """Draw in place and return ``rgb``. Text scales with the image so it stays legible."""
    from sonoseg.infer.biometry import ellipse_polygon

    h, w = rgb.shape[:2]
    scale = max(0.35, min(h, w) / 700.0)
    thick = max(1, int(round(scale * 1.5)))
    if biometry:
        ell = {"center": biometry["center"], "orientation_deg": biometry["orientation_deg"],
               "major_axis": biometry["ofd"], "minor_axis": biometry["bpd"]}
        cv2.polylines(rgb, [_pts(ellipse_polygon(ell, spacing))], True, _ELLIPSE, thick, cv2.LINE_AA, shift=4)
        for key in ("bpd_endpoints", "ofd_endpoints"):
            p = _pts(np.array(biometry[key]))
            cv2.line(rgb, tuple(p[0]), tuple(p[1]), _CALLIPER, thick, cv2.LINE_AA, shift=4)
    step = int(28 * scale) + 4
    y = step
    if banner:
        cv2.rectangle(rgb, (0, 0), (w - 1, step + 6), _BANNER, -1)
        _text(rgb, banner, (6, step - 2), scale, thick)
        y += step + 8
    for line in caption:
        _text(rgb, line, (6, y), scale, thick)
        y += step
    return rgb
