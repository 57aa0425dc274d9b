"""Synthetic CT phantoms for 3D tests: a body (soft-tissue ellipse cylinder in air) holding organs as
ellipsoids with known labels and HU values, on an anisotropic grid with a non-trivial affine. Organ
geometry is given in millimetres, so the same phantom on two grids describes the same anatomy."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from sonoseg.io.types import ImageMeta, Volume


@dataclass(frozen=True)
class Organ:
    label: int
    name: str
    centre_mm: tuple[float, float, float]  # (x, y, z) from the volume centre
    radii_mm: tuple[float, float, float]
    hu: float


ORGANS = (
    Organ(1, "liver", (-35.0, 5.0, 0.0), (40.0, 32.0, 30.0), 60.0),
    Organ(2, "spleen", (45.0, 10.0, 4.0), (18.0, 22.0, 20.0), 110.0),
    Organ(3, "kidney", (25.0, -30.0, -10.0), (14.0, 12.0, 22.0), 180.0),
)


def phantom_affine(shape_xyz: Sequence[int], spacing_xyz: Sequence[float], flip_x: bool = True) -> np.ndarray:
    """LPS-like storage (x decreasing towards R) when ``flip_x``: orientation must be handled, not assumed."""
    aff = np.diag([-spacing_xyz[0] if flip_x else spacing_xyz[0], spacing_xyz[1], spacing_xyz[2], 1.0])
    aff[:3, 3] = [12.5, -40.0, 100.0]
    return aff


def make_phantom(shape_xyz: Sequence[int] = (64, 56, 24), spacing_xyz: Sequence[float] = (1.6, 1.8, 4.0),
                 organs: Sequence[Organ] = ORGANS, noise_hu: float = 10.0, seed: int = 0,
                 shift_mm: Sequence[float] = (0.0, 0.0, 0.0)) -> tuple[Volume, Volume]:
    """(CT Volume in HU, label Volume) on the same grid; organ centres moved by ``shift_mm``."""
    nx, ny, nz = (int(s) for s in shape_xyz)
    sx, sy, sz = (float(s) for s in spacing_xyz)
    z, y, x = np.ogrid[:nz, :ny, :nx]  # open grids: broadcasting keeps a 512x512x300 phantom cheap
    px, py, pz = (x - (nx - 1) / 2) * sx, (y - (ny - 1) / 2) * sy, (z - (nz - 1) / 2) * sz
    rng = np.random.default_rng(seed)
    hu = np.full((nz, ny, nx), -1000.0, np.float32)
    body = np.broadcast_to((px / (0.42 * nx * sx)) ** 2 + (py / (0.42 * ny * sy)) ** 2 < 1, hu.shape)
    hu[body] = -80.0  # fat / soft tissue mix
    lab = np.zeros((nz, ny, nx), np.uint8)
    for o in organs:
        cx, cy, cz = (c + d for c, d in zip(o.centre_mm, shift_mm))
        inside = ((px - cx) / o.radii_mm[0]) ** 2 + ((py - cy) / o.radii_mm[1]) ** 2 + ((pz - cz) / o.radii_mm[2]) ** 2 < 1
        inside &= body
        hu[inside] = o.hu
        lab[inside] = o.label
    for k in range(nz):  # slice by slice: no full-size float64 noise array
        hu[k] += rng.normal(0.0, noise_hu, hu.shape[1:]).astype(np.float32) * body[k]
    aff = phantom_affine(shape_xyz, spacing_xyz)
    spacing = (sz, sy, sx)
    return (Volume(array=np.round(hu).astype(np.int16), spacing=spacing, affine=aff, meta=ImageMeta("phantom", "nifti")),
            Volume(array=lab, spacing=spacing, affine=aff.copy(), meta=ImageMeta("phantom labels", "nifti")))


def write_phantom_dataset(root: str | Path, n: int = 2, seed: int = 0, organs: Sequence[Organ] = ORGANS,
                          **kw) -> Path:
    """``root/images/case{i}.nii.gz``, ``root/masks/case{i}.nii.gz``, ``root/labels.json``; organs move by
    a few mm between cases."""
    from sonoseg.io import write_nifti

    root = Path(root)
    rng = np.random.default_rng(seed)
    for i in range(n):
        shift = tuple(float(v) for v in rng.uniform(-4, 4, 3)) if i else (0.0, 0.0, 0.0)
        image, labels = make_phantom(organs=organs, seed=seed + i, shift_mm=shift, **kw)
        write_nifti(image, root / "images" / f"case{i}.nii.gz")
        write_nifti(labels, root / "masks" / f"case{i}.nii.gz")
    (root / "labels.json").write_text(json.dumps({str(o.label): o.name for o in organs}, indent=1))
    return root
