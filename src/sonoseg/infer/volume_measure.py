"""Per-organ measurements of a 3D label map in millimetres: volume (mL), bounding box (extent along the
R, A, S axes) and the largest axial diameter (the longest in-plane distance across the organ on any
axial slice, measured between voxel edges as the 2D measurements are).

An organ is one piece: the volume counts every voxel of the label (what the label map says), but the
bounding box and the diameter are those of its largest 26-connected component; the other pieces are
reported as ``components`` and ``largest_component_fraction``. (Measured over all pieces, scattered false
positives far apart made a 40 mL spleen 270 mm "wide": the span between them, not an organ size.)
Checked against an analytic sphere and ellipsoid at anisotropic spacing in several storage orders
(tests/test_volume_measure.py)."""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np


def ras_xyz(labels_zyx: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An array ([z, y, x]) reoriented to the closest RAS axes ([x, y, z] with z = S) and that grid's affine."""
    import nibabel.orientations as ornt

    data = np.asarray(labels_zyx).T
    t = ornt.io_orientation(np.asarray(affine, float))
    return ornt.apply_orientation(data, t), np.asarray(affine, float) @ ornt.inv_ornt_aff(t, data.shape)


def _max_feret_mm(mask2d: np.ndarray, sx: float, sy: float) -> float:
    """Largest distance between voxel corners of the boundary pixels of a 2D mask ([x, y] axes)."""
    import cv2

    from scipy import ndimage

    edge = mask2d & ~ndimage.binary_erosion(mask2d)
    ix, iy = np.nonzero(edge)
    if ix.size == 0:
        return 0.0
    corners = np.concatenate([np.stack([(ix + dx) * sx, (iy + dy) * sy], 1) for dx in (-0.5, 0.5) for dy in (-0.5, 0.5)])
    hull = cv2.convexHull(corners.astype(np.float32))[:, 0].astype(np.float64)
    d2 = ((hull[:, None, :] - hull[None, :, :]) ** 2).sum(-1)
    return float(math.sqrt(d2.max()))


def _largest_component(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """(the largest 26-connected piece of ``mask``, number of pieces)."""
    from scipy import ndimage

    comp, k = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if k <= 1:
        return mask, int(k)
    sizes = np.bincount(comp.ravel())[1:]
    return comp == 1 + int(np.argmax(sizes)), int(k)


def measure_organs(labels_zyx: np.ndarray, affine: np.ndarray, names: Mapping[int, str]) -> list[dict]:
    """One record per named class: present or not (absent organs report zeros, so a missed organ is visible)."""
    lab, aff = ras_xyz(labels_zyx, affine)
    sp = np.sqrt((aff[:3, :3] ** 2).sum(axis=0))
    voxel_ml = abs(float(np.linalg.det(aff[:3, :3]))) / 1000.0
    out = []
    for c in sorted(names):
        m = lab == c
        n = int(m.sum())
        rec = {"label": int(c), "name": names[c], "voxels": n, "volume_ml": round(n * voxel_ml, 3),
               "components": 0, "largest_component_fraction": None,
               "bbox_mm": None, "bbox_ras_min_mm": None, "bbox_ras_max_mm": None, "axial_diameter_mm": 0.0,
               "axial_diameter_slice": None}
        if n:
            m, rec["components"] = _largest_component(m)
            rec["largest_component_fraction"] = round(int(m.sum()) / n, 4)
            idx = np.nonzero(m)
            lo = np.array([i.min() for i in idx], float) - 0.5
            hi = np.array([i.max() for i in idx], float) + 0.5
            corners = np.array([[a, b, cc, 1.0] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for cc in (lo[2], hi[2])])
            world = (aff @ corners.T).T[:, :3]
            rec["bbox_ras_min_mm"] = [round(float(v), 2) for v in world.min(0)]
            rec["bbox_ras_max_mm"] = [round(float(v), 2) for v in world.max(0)]
            rec["bbox_mm"] = [round(float(v), 2) for v in world.max(0) - world.min(0)]
            best, k_best = 0.0, None
            for k in np.unique(idx[2]):
                d = _max_feret_mm(m[:, :, k], sp[0], sp[1])
                if d > best:
                    best, k_best = d, int(k)
            rec["axial_diameter_mm"] = round(best, 2)
            rec["axial_diameter_slice"] = k_best  # index along S of the RAS-reoriented grid
        out.append(rec)
    return out
