"""Mask clean-up after thresholding: keep the largest component, drop small ones, fill holes.

Order: component filtering (min size, then largest) before hole filling, so a speck inside a hole
is dropped and the hole then filled. Components use 8-connectivity by default (``connectivity=2``,
scikit-image convention). Small-component removal is a few lines on ``scipy.ndimage.label`` rather
than ``skimage.morphology.remove_small_objects``, whose size argument changed meaning across
releases (``min_size`` -> ``max_size``); here ``min_size`` means "keep components with area >=
min_size".
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from scipy import ndimage


def _structure(connectivity: int) -> np.ndarray:
    if connectivity not in (1, 2):
        raise ValueError(f"connectivity must be 1 (4-neighbours) or 2 (8-neighbours), got {connectivity}")
    return ndimage.generate_binary_structure(2, connectivity)


def min_pixels(min_size: float = 0, min_area_mm2: float = 0, spacing: Optional[Sequence[float]] = None) -> float:
    """Area threshold in pixels: the larger of ``min_size`` (px) and ``min_area_mm2`` converted with spacing."""
    thr = float(min_size)
    if min_area_mm2:
        if spacing is None:
            raise ValueError("min_area_mm2 needs the pixel spacing (row_mm, col_mm)")
        thr = max(thr, float(min_area_mm2) / (float(spacing[0]) * float(spacing[1])))
    return thr


def _clean_binary(m: np.ndarray, keep_largest: bool, min_px: float, fill_holes: bool, connectivity: int) -> np.ndarray:
    m = np.asarray(m, dtype=bool)
    if (keep_largest or min_px > 0) and m.any():
        labels, n = ndimage.label(m, structure=_structure(connectivity))
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        sizes[0] = 0
        keep = sizes >= min_px if min_px > 0 else sizes > 0
        keep[0] = False
        if keep_largest and keep.any():
            largest = int(np.argmax(np.where(keep, sizes, -1)))  # ties: lowest label (first in raster order)
            keep = np.zeros_like(keep)
            keep[largest] = True
        m = keep[labels]
    if fill_holes and m.any():
        m = ndimage.binary_fill_holes(m)
    return m


def tentative_region(probability: np.ndarray, fraction: float = 0.5, min_peak: float = 0.1,
                     connectivity: int = 2) -> np.ndarray:
    """The region a model was most sure of where its thresholded mask is empty: the connected component of
    ``probability >= fraction * peak`` that holds the peak pixel (a half-maximum contour for 0.5); all False
    when the peak is below ``min_peak``. For the tentative outline of :mod:`sonoseg.infer.predictor`."""
    p = np.asarray(probability, dtype=np.float32)
    if p.ndim != 2:
        raise ValueError(f"tentative_region expects a 2-D probability map, got shape {p.shape}")
    peak_at = np.unravel_index(int(np.argmax(p)), p.shape)
    peak = float(p[peak_at])
    if not np.isfinite(peak) or peak < min_peak:
        return np.zeros(p.shape, dtype=bool)
    labels, _ = ndimage.label(p >= fraction * peak, structure=_structure(connectivity))
    return labels == labels[peak_at]


def postprocess(
    mask: np.ndarray,
    keep_largest: bool = False,
    min_size: float = 0,
    fill_holes: bool = False,
    *,
    min_area_mm2: float = 0,
    spacing: Optional[Sequence[float]] = None,
    classes: int = 1,
    connectivity: int = 2,
) -> np.ndarray:
    """Clean a binary mask (``classes=1``, non-zero = foreground) or a label map (``classes=K>1``).

    Label maps are processed per class 1..K-1: removed pixels become background (0), and holes are
    filled only where the map is background, so a region of another class enclosed by this one is
    kept. Returns an array of the input dtype and shape.
    """
    a = np.asarray(mask)
    if a.ndim != 2:
        raise ValueError(f"postprocess expects a 2-D mask (H, W), got shape {a.shape}")
    min_px = min_pixels(min_size, min_area_mm2, spacing)
    if classes == 1:
        out = _clean_binary(a != 0, keep_largest, min_px, fill_holes, connectivity)
        if a.dtype == bool:
            return out
        fg = a[a != 0]
        value = fg.flat[0] if fg.size and np.all(fg == fg.flat[0]) else 1  # keep 255-style masks as 255
        return (out * value).astype(a.dtype)
    out = a.copy()
    for c in range(1, classes):
        cls = a == c
        if not cls.any():
            continue
        kept = _clean_binary(cls, keep_largest, min_px, False, connectivity)
        out[cls & ~kept] = 0
        if fill_holes:
            filled = ndimage.binary_fill_holes(out == c)
            out[filled & (out == 0)] = c
    return out
