"""Fetal-head biometry from an elliptical structure: HC, BPD, OFD, and the ellipse-fit postprocessing.

Definitions (ISUOG-style ellipse method, as used by HC18-type annotations and ultrasound machines):

* The structure's boundary (contour convention ``edge`` or ``centre``, see :mod:`sonoseg.infer.measure`)
  is fitted by an ellipse (``cv2.fitEllipse`` in physical space, so anisotropic pixels are handled).
* **HC** (head circumference) = the fitted ellipse's circumference (Ramanujan II).
* **OFD** (occipito-frontal diameter) = its major axis, **BPD** (biparietal diameter) = its minor axis.
* Calliper convention: **outer-outer** — both callipers on the mask's outer boundary. A filled head
  mask has no inner skull table, so outer-inner BPD (the "leading edge to leading edge" of some charts)
  cannot be derived from it; subtract the skull thickness yourself when a chart needs outer-inner.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

CALLIPER = "outer-outer"


def _axis_endpoints(ell: dict, spacing: Sequence[float], minor: bool) -> list[list[float]]:
    """Pixel [row, col] endpoints of the fitted ellipse's major (or minor) axis."""
    sr, sc = spacing
    theta = math.radians(ell["orientation_deg"] + (90.0 if minor else 0.0))
    half = (ell["minor_axis"] if minor else ell["major_axis"]) / 2.0
    dr, dc = half * math.sin(theta) / sr, half * math.cos(theta) / sc
    r0, c0 = ell["center"]
    return [[r0 - dr, c0 - dc], [r0 + dr, c0 + dc]]


def biometry(structure: Optional[dict], spacing: Optional[Sequence[float]]) -> Optional[dict]:
    """HC / BPD / OFD of one measured structure (a record of ``measure_mask``); None without one."""
    if not structure or not structure.get("ellipse"):
        return None
    ell = structure["ellipse"]
    sp = tuple(spacing) if spacing is not None else (1.0, 1.0)
    return {
        "hc": ell["circumference"],
        "bpd": ell["minor_axis"],
        "ofd": ell["major_axis"],
        "unit": structure.get("unit"),
        "calliper": CALLIPER,
        "contour": structure.get("contour", "edge"),
        "label": structure.get("label"),
        "center": ell["center"],
        "orientation_deg": ell["orientation_deg"],
        "bpd_endpoints": _axis_endpoints(ell, sp, minor=True),
        "ofd_endpoints": _axis_endpoints(ell, sp, minor=False),
    }


def largest(structures: list[dict]) -> Optional[dict]:
    return max(structures, key=lambda s: float(s.get("area") or 0.0)) if structures else None


def ellipse_polygon(ell: dict, spacing: Optional[Sequence[float]], n: int = 360) -> np.ndarray:
    """N×2 [row, col] pixel coordinates of a fitted ellipse (axes in physical units)."""
    sr, sc = tuple(spacing) if spacing is not None else (1.0, 1.0)
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    a, b = ell["major_axis"] / 2.0, ell["minor_axis"] / 2.0
    th = math.radians(ell["orientation_deg"])
    x = a * np.cos(t) * math.cos(th) - b * np.sin(t) * math.sin(th)  # physical col offset
    y = a * np.cos(t) * math.sin(th) + b * np.sin(t) * math.cos(th)  # physical row offset
    r0, c0 = ell["center"]
    return np.stack([r0 + y / sr, c0 + x / sc], 1)


def ellipse_fit_mask(mask: np.ndarray, spacing: Optional[Sequence[float]] = None, contour: str = "edge") -> np.ndarray:
    """Replace each label's largest component by its fitted ellipse (others dropped).

    For structures known to be elliptical (the fetal skull): a notch or bulge of the network's mask
    no longer reaches the measurement. The ellipse is filled the way the ``contour`` convention reads
    it back unchanged: ``edge``, the pixels whose centre is inside; ``centre``, with the outline pixels
    the curve passes through (as cv2.ellipse draws HC18-style annotations). Filled the edge way, a
    ``centre`` measurement read the fitted head 0.3 % small again (bench/contour.py)."""
    from skimage.draw import polygon

    from sonoseg.infer.measure import measure_mask

    mask = np.asarray(mask)
    out = np.zeros(mask.shape, dtype=np.uint8)
    seen = set()
    for s in measure_mask(mask, spacing, contour=contour):
        if s["label"] in seen or s["area_px"] < 5:
            continue
        seen.add(s["label"])
        poly = ellipse_polygon(s["ellipse"], spacing)
        if contour == "centre":
            import cv2

            pts = np.round(poly[:, ::-1] * 16).astype(np.int32)  # (x, y) with 4 bits of sub-pixel precision
            cv2.fillPoly(out, [pts], int(s["label"]), cv2.LINE_8, 4)
            continue
        rr, cc = polygon(poly[:, 0], poly[:, 1], shape=mask.shape)
        out[rr, cc] = s["label"]
    return out
