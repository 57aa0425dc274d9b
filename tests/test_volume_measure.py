"""3D measurements (sonoseg.infer.volume_measure) against analytic shapes: a sphere and an ellipsoid of
known size, voxelised at anisotropic spacing in three storage orders (RAS, DICOM-like LPS, sagittal
slices), and an organ with a far-away stray piece (issue 25 item 10)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sonoseg.infer.volume_measure import measure_organs

# voxel -> RAS mm affines (array index order i, j, k = x, y, z of the [z, y, x] label array)
AFFINES = {
    "ras": np.diag([0.7, 0.9, 2.5, 1.0]),
    "lps": np.diag([-0.8, -0.8, 2.0, 1.0]),
    "sagittal": np.array([[0.0, 0.0, -0.7, 0.0], [0.0, -0.9, 0.0, 0.0], [1.5, 0.0, 0.0, 0.0], [0, 0, 0, 1.0]]),
}


def voxelise(affine: np.ndarray, semi_axes_mm, centre_mm, extent_mm: float = 150.0) -> np.ndarray:
    """[z, y, x] uint8 label map (1 inside) of an axis-aligned (R, A, S) ellipsoid, sampled at voxel
    centres of a grid with ``affine`` that covers +-extent/2 mm around the centre."""
    steps = np.abs(affine[:3, :3]).sum(axis=0)  # mm per index along i, j, k
    n = [int(math.ceil(extent_mm / s)) for s in steps]
    origin_idx = np.array(n, float) / 2.0
    aff = affine.copy()
    aff[:3, 3] = np.asarray(centre_mm, float) - affine[:3, :3] @ origin_idx
    i, j, k = np.meshgrid(*[np.arange(v) for v in n], indexing="ij")
    world = np.einsum("rc,cijk->rijk", aff[:3, :3], np.stack([i, j, k]).astype(float)) + aff[:3, 3, None, None, None]
    q = sum(((world[r] - centre_mm[r]) / semi_axes_mm[r]) ** 2 for r in range(3))
    return (q <= 1.0).astype(np.uint8).T.copy(), aff  # [i, j, k] -> [z, y, x]


def max_step(affine) -> float:
    return float(np.abs(affine[:3, :3]).sum(axis=0).max())


@pytest.mark.parametrize("order", sorted(AFFINES))
def test_sphere_volume_bbox_and_diameter(order):
    lab, aff = voxelise(AFFINES[order], (20.0, 20.0, 20.0), (3.3, -41.7, 12.2))
    (rec,) = measure_organs(lab, aff, {1: "sphere"})
    assert rec["volume_ml"] == pytest.approx(4 / 3 * math.pi * 20**3 / 1000, rel=0.03)
    tol = max_step(aff)
    assert rec["bbox_mm"] == pytest.approx([40.0, 40.0, 40.0], abs=tol)
    assert rec["axial_diameter_mm"] == pytest.approx(40.0, abs=tol * math.sqrt(2))
    centre = (np.array(rec["bbox_ras_min_mm"]) + np.array(rec["bbox_ras_max_mm"])) / 2
    assert centre == pytest.approx([3.3, -41.7, 12.2], abs=tol)
    assert rec["components"] == 1 and rec["largest_component_fraction"] == 1.0


@pytest.mark.parametrize("order", sorted(AFFINES))
def test_ellipsoid_axes_land_on_r_a_s(order):
    a, b, c = 30.0, 20.0, 12.0  # semi-axes along R, A, S
    lab, aff = voxelise(AFFINES[order], (a, b, c), (-10.0, 5.0, 30.0))
    (rec,) = measure_organs(lab * 52, aff, {52: "ellipsoid"})  # any label value (training labels)
    assert rec["volume_ml"] == pytest.approx(4 / 3 * math.pi * a * b * c / 1000, rel=0.03)
    tol = max_step(aff)
    assert rec["bbox_mm"] == pytest.approx([2 * a, 2 * b, 2 * c], abs=tol)
    assert rec["axial_diameter_mm"] == pytest.approx(2 * a, abs=tol * math.sqrt(2))  # the long axis is axial


def test_a_stray_piece_does_not_stretch_the_organ():
    """A 34 mL sphere plus a few voxels 100 mm away on the same axial slices: the volume counts both,
    the size is the sphere's (before the fix the diameter was the 120 mm span between the pieces)."""
    lab, aff = voxelise(AFFINES["ras"], (20.0, 20.0, 20.0), (0.0, 0.0, 0.0), extent_mm=260.0)
    whole = measure_organs(lab, aff, {1: "spleen"})[0]
    inv = np.linalg.inv(aff)
    i, j, k = (int(round(v)) for v in (inv @ [100.0, 0.0, 0.0, 1.0])[:3])
    lab[k - 1:k + 2, j - 2:j + 3, i - 2:i + 3] = 1  # [z, y, x]
    rec = measure_organs(lab, aff, {1: "spleen"})[0]
    assert rec["volume_ml"] > whole["volume_ml"] and rec["components"] == 2
    assert rec["largest_component_fraction"] == pytest.approx(whole["voxels"] / rec["voxels"], abs=1e-4)
    assert rec["axial_diameter_mm"] == whole["axial_diameter_mm"]
    assert rec["bbox_mm"] == whole["bbox_mm"]
