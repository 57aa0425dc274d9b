"""Mask overlays on ultrasound images (OpenCV): filled, contour and TP/FP/FN error maps.

All functions return HxWx3 uint8 **RGB** arrays (ready for matplotlib / PIL; convert with
``cv2.cvtColor(x, cv2.COLOR_RGB2BGR)`` before ``cv2.imwrite``). Shared by the report gallery and
``sonoseg predict``.
"""

from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np

Color = tuple[int, int, int]

# Okabe-Ito colours (readable with common colour-vision deficiencies); index = class label - 1.
PALETTE: tuple[Color, ...] = (
    (230, 159, 0),  # orange
    (86, 180, 233),  # sky blue
    (0, 158, 115),  # bluish green
    (240, 228, 66),  # yellow
    (0, 114, 178),  # blue
    (213, 94, 0),  # vermillion
    (204, 121, 167),  # reddish purple
)
TP_COLOR: Color = (0, 158, 115)  # bluish green
FP_COLOR: Color = (230, 159, 0)  # orange
FN_COLOR: Color = (204, 40, 160)  # magenta


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Grey or RGB image (H,W | 1,H,W | H,W,1 | H,W,3; float or int) -> HxWx3 uint8 for display.

    uint8 is kept; floats within [0, 1] are scaled by 255; anything else is min-max stretched.
    """
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] != 3):
        raise ValueError(f"image must be (H, W) or (H, W, 3), got shape {np.shape(image)}")
    if a.dtype != np.uint8:
        f = a.astype(np.float64)
        finite = np.isfinite(f)
        lo, hi = (f[finite].min(), f[finite].max()) if finite.any() else (0.0, 1.0)
        if lo >= 0 and hi <= 1:
            lo, hi = 0.0, 1.0
        f = np.where(finite, f, lo)
        a = np.clip((f - lo) / (hi - lo if hi > lo else 1.0) * 255 + 0.5, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = cv2.cvtColor(a, cv2.COLOR_GRAY2RGB)
    return np.ascontiguousarray(a)


def _label_colors(mask: np.ndarray, color: Optional[Color]) -> list[tuple[np.ndarray, Color]]:
    m = np.asarray(mask)
    if m.dtype == bool or color is not None:
        return [(m != 0, tuple(int(v) for v in (color or PALETTE[0])))]
    labels = [int(v) for v in np.unique(m) if v != 0]
    return [(m == v, PALETTE[(v - 1) % len(PALETTE)]) for v in labels]


def overlay_image(
    image: np.ndarray, mask: np.ndarray, color: Optional[Color] = (230, 159, 0), alpha: float = 0.4
) -> np.ndarray:
    """Blend ``color`` over the pixels where ``mask`` is set (``color=None``: one palette colour per label)."""
    rgb = to_rgb_uint8(image)
    if np.shape(mask) != rgb.shape[:2]:
        raise ValueError(f"mask shape {np.shape(mask)} != image shape {rgb.shape[:2]}")
    out = rgb.copy()
    for region, col in _label_colors(mask, color):
        if not region.any():
            continue
        solid = np.empty_like(rgb)
        solid[:] = col
        blended = cv2.addWeighted(rgb, 1.0 - alpha, solid, alpha, 0.0)
        out[region] = blended[region]
    return out


def contour_overlay(
    image: np.ndarray,
    mask: np.ndarray,
    color: Optional[Color] = (230, 159, 0),
    thickness: int = 1,
) -> np.ndarray:
    """Draw the outlines (outer and hole boundaries) of ``mask`` on the image."""
    out = to_rgb_uint8(image).copy()
    if np.shape(mask) != out.shape[:2]:
        raise ValueError(f"mask shape {np.shape(mask)} != image shape {out.shape[:2]}")
    for region, col in _label_colors(mask, color):
        contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, col, thickness)
    return out


def error_map(
    image: np.ndarray,
    gt: np.ndarray,
    pred: np.ndarray,
    alpha: float = 0.6,
    colors: Sequence[Color] = (TP_COLOR, FP_COLOR, FN_COLOR),
) -> np.ndarray:
    """Colour TP / FP / FN pixels (non-zero = foreground).

    For label maps a pixel is TP when both labels agree; a foreground prediction with a wrong label
    is shown as FP; a GT foreground pixel predicted as background is FN.
    """
    g, p = np.asarray(gt), np.asarray(pred)
    fg_g, fg_p = g != 0, p != 0
    tp = fg_g & fg_p & (g == p)
    fp = fg_p & ~tp
    fn = fg_g & ~tp & ~fp
    out = to_rgb_uint8(image)
    for region, col in zip((tp, fp, fn), colors):
        out = overlay_image(out, region, col, alpha)
    return out
