"""Boundary distances between two non-empty binary masks: HD95 and ASSD, in mm when spacing is known.

Definitions (the DeepMind surface-distance / Metrics Reloaded ones, which MONAI implements):

* boundary of a mask = its pixels that have a 4-neighbour outside the mask (``mask XOR erosion``
  with a cross-shaped structuring element; pixels on the image border count as boundary);
* ``d(P->G)`` = Euclidean distance, in physical units, from each boundary pixel of P to the nearest
  boundary pixel of G; ``spacing = (row_mm, col_mm)`` scales the two array axes independently;
* **HD95** = max(95th percentile of d(P->G), 95th percentile of d(G->P)) (linear interpolation);
* **ASSD** = mean over the union of both directed sets = ``(sum d(P->G) + sum d(G->P)) / (|dP| + |dG|)``.

Two backends compute the same thing: ``"monai"`` (default; ``compute_hausdorff_distance`` /
``compute_average_surface_distance(symmetric=True)`` with ``spacing``) and ``"scipy"``
(``distance_transform_edt(sampling=spacing)`` on the boundaries). The scipy one is kept as an
independent cross-check (tests compare both) and because it does not need torch.
Empty masks are the caller's business (see :mod:`sonoseg.metrics.segmentation`); here they give NaN.
"""

from __future__ import annotations

import warnings
from typing import Literal, Optional, Sequence

import numpy as np
from scipy import ndimage

Backend = Literal["monai", "scipy"]


def _spacing(spacing: Optional[Sequence[float]], ndim: int) -> tuple[float, ...]:
    if spacing is None:
        return (1.0,) * ndim
    sp = tuple(float(s) for s in spacing)
    if len(sp) != ndim or not all(np.isfinite(s) and s > 0 for s in sp):
        raise ValueError(f"spacing must be {ndim} positive numbers (row, col), got {spacing!r}")
    return sp


def boundary(mask: np.ndarray) -> np.ndarray:
    """Inner boundary (4-connected erosion, border counts as outside), as in MONAI ``get_mask_edges``."""
    m = np.asarray(mask, dtype=bool)
    return m & ~ndimage.binary_erosion(m, border_value=0)


def directed_distances_scipy(
    pred: np.ndarray, gt: np.ndarray, spacing: Optional[Sequence[float]] = None
) -> tuple[np.ndarray, np.ndarray]:
    """(d(P->G), d(G->P)) boundary-to-boundary distances via exact EDT with ``sampling=spacing``."""
    sp = _spacing(spacing, np.ndim(pred))
    bp, bg = boundary(pred), boundary(gt)
    if not bp.any() or not bg.any():
        return np.empty(0), np.empty(0)
    d_to_g = ndimage.distance_transform_edt(~bg, sampling=sp)
    d_to_p = ndimage.distance_transform_edt(~bp, sampling=sp)
    return d_to_g[bp], d_to_p[bg]


def _hd95_assd_scipy(pred, gt, spacing) -> tuple[float, float]:
    p2g, g2p = directed_distances_scipy(pred, gt, spacing)
    if p2g.size == 0 or g2p.size == 0:
        return float("nan"), float("nan")
    hd95 = max(float(np.percentile(p2g, 95)), float(np.percentile(g2p, 95)))
    assd = float((p2g.sum() + g2p.sum()) / (p2g.size + g2p.size))
    return hd95, assd


def _hd95_assd_monai(pred, gt, spacing) -> tuple[float, float]:
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    p = np.asarray(pred, dtype=bool)
    g = np.asarray(gt, dtype=bool)
    if not p.any() or not g.any():
        return float("nan"), float("nan")
    sp = [list(_spacing(spacing, p.ndim))]  # one entry per batch item: unambiguous for MONAI
    yp, yg = p[None, None].astype(np.float32), g[None, None].astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd = compute_hausdorff_distance(yp, yg, include_background=True, percentile=95, spacing=sp)
        asd = compute_average_surface_distance(yp, yg, include_background=True, symmetric=True, spacing=sp)
    return float(hd.reshape(-1)[0]), float(asd.reshape(-1)[0])


def hd95_assd(
    pred: np.ndarray,
    gt: np.ndarray,
    spacing: Optional[Sequence[float]] = None,
    backend: Backend = "monai",
) -> tuple[float, float]:
    """(HD95, ASSD) between binary masks, in the units of ``spacing`` (pixels when None).

    NaN when either mask is empty: the metrics module decides how such cases are scored.
    """
    if np.shape(pred) != np.shape(gt):
        raise ValueError(f"pred shape {np.shape(pred)} != gt shape {np.shape(gt)}")
    if backend == "monai":
        return _hd95_assd_monai(pred, gt, spacing)
    if backend == "scipy":
        return _hd95_assd_scipy(pred, gt, spacing)
    raise ValueError(f"unknown surface-distance backend {backend!r} (monai | scipy)")


def image_diagonal(shape: Sequence[int], spacing: Optional[Sequence[float]] = None) -> float:
    """Diagonal of the image extent (rows*row_mm, cols*col_mm): the worst-case distance penalty."""
    sp = _spacing(spacing, len(shape))
    return float(np.sqrt(sum((n * s) ** 2 for n, s in zip(shape, sp))))
