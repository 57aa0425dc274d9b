"""HD95 / ASSD in mm: hand-computed cases (anisotropic spacing), MONAI vs scipy vs brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.distance import cdist

from sonoseg.errors import InputError
from sonoseg.evaluate import evaluate_pairs, hd95_assd, segmentation_metrics

BACKENDS = ("monai", "scipy")


def _squares(shift_rows: int = 2):
    """4x4 GT square at rows/cols 2..5 and the same square moved down by ``shift_rows``."""
    g = np.zeros((12, 12), bool)
    g[2:6, 2:6] = True
    p = np.roll(g, shift_rows, axis=0)
    return p, g


@pytest.mark.parametrize("backend", BACKENDS)
def test_shifted_squares_anisotropic_by_hand(backend):
    # Boundary = 12 px per square (4x4 minus the 2x2 inside). Moving down 2 rows, spacing (0.5, 0.2) mm:
    # P->G distances: 4 px on G's boundary (0); (4,3),(4,4) -> 1 col away (0.2 mm);
    # (6,2),(6,5) -> 1 row from (5,2),(5,5) (0.5 mm); row 7 (4 px) -> 2 rows from row 5 (1.0 mm).
    # G->P is the mirror image: same multiset {0 x4, 0.2 x2, 0.5 x2, 1.0 x4}.
    # ASSD = 2 * (0.4 + 1.0 + 4.0) / 24 = 0.45 mm; 95th pct of 12 sorted values (index 10.45) = 1.0 mm.
    p, g = _squares()
    hd, asd = hd95_assd(p, g, spacing=(0.5, 0.2), backend=backend)
    assert hd == pytest.approx(1.0, abs=1e-6)
    assert asd == pytest.approx(0.45, abs=1e-6)
    # (row, col) order matters: with (0.2, 0.5) the row steps are short: {0 x4, 0.2 x4, 0.4 x4}
    hd, asd = hd95_assd(p, g, spacing=(0.2, 0.5), backend=backend)
    assert hd == pytest.approx(0.4, abs=1e-6)
    assert asd == pytest.approx(0.2, abs=1e-6)
    # no spacing -> pixels: {0 x4, 1 x4, 2 x4}
    hd, asd = hd95_assd(p, g, spacing=None, backend=backend)
    assert hd == pytest.approx(2.0, abs=1e-6) and asd == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_pixels_known_mm_distance(backend):
    g = np.zeros((20, 20), bool)
    p = np.zeros((20, 20), bool)
    g[10, 10] = True
    p[13, 14] = True  # 3 rows * 0.5 mm, 4 cols * 0.2 mm -> hypot(1.5, 0.8) = 1.7 mm
    hd, asd = hd95_assd(p, g, spacing=(0.5, 0.2), backend=backend)
    assert hd == pytest.approx(1.7, abs=1e-6) and asd == pytest.approx(1.7, abs=1e-6)


def _blob(rng, shape=(64, 64), sigma=4.0):
    return ndimage.gaussian_filter(rng.random(shape), sigma) > 0.5


def _brute_force(p, g, spacing):
    """Independent reference: boundary by explicit 4-neighbour test, all-pairs distances."""

    def edge(m):
        pad = np.pad(m, 1)
        inner = pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
        return m & ~inner

    cp = np.argwhere(edge(p)) * np.asarray(spacing)
    cg = np.argwhere(edge(g)) * np.asarray(spacing)
    d = cdist(cp, cg)
    p2g, g2p = d.min(axis=1), d.min(axis=0)
    hd = max(np.percentile(p2g, 95), np.percentile(g2p, 95))
    return hd, np.concatenate([p2g, g2p]).mean()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_monai_scipy_and_brute_force_agree_on_random_blobs(seed):
    rng = np.random.default_rng(seed)
    p, g = _blob(rng), _blob(rng)
    assert p.any() and g.any()
    spacing = (0.5, 0.2) if seed % 2 == 0 else (0.13, 0.31)
    ref = _brute_force(p, g, spacing)
    for backend in BACKENDS:
        hd, asd = hd95_assd(p, g, spacing=spacing, backend=backend)
        assert hd == pytest.approx(ref[0], rel=1e-5), backend
        assert asd == pytest.approx(ref[1], rel=1e-5), backend


def test_scaling_isotropic_spacing_scales_distances():
    rng = np.random.default_rng(7)
    p, g = _blob(rng), _blob(rng)
    hd1, asd1 = hd95_assd(p, g)
    hd2, asd2 = hd95_assd(p, g, spacing=(0.3, 0.3))
    assert hd2 == pytest.approx(0.3 * hd1, rel=1e-5) and asd2 == pytest.approx(0.3 * asd1, rel=1e-5)


def test_identical_masks_zero_distance_and_empty_nan():
    p, g = _squares(0)
    assert hd95_assd(p, g, (0.5, 0.2)) == (0.0, 0.0)
    assert all(math.isnan(v) for v in hd95_assd(np.zeros_like(g), g))


def test_bad_spacing_and_backend_rejected():
    p, g = _squares()
    with pytest.raises(ValueError, match="spacing"):
        hd95_assd(p, g, spacing=(0.5,), backend="scipy")
    with pytest.raises(ValueError, match="spacing"):
        hd95_assd(p, g, spacing=(0.5, -1.0), backend="scipy")
    with pytest.raises(ValueError, match="backend"):
        hd95_assd(p, g, backend="nope")


def test_segmentation_metrics_distance_in_mm_and_units():
    p, g = _squares()
    m = segmentation_metrics(p, g, spacing=(0.5, 0.2))
    assert m["hd95"] == pytest.approx(1.0, abs=1e-6) and m["assd"] == pytest.approx(0.45, abs=1e-6)
    mm = evaluate_pairs([("a", p, g, (0.5, 0.2))], n_boot=10)
    assert mm.units == "mm" and mm.aggregate["assd"]["mean"] == pytest.approx(0.45, abs=1e-6)
    px = evaluate_pairs([("a", p, g, None)], n_boot=10)
    assert px.units == "px" and px.aggregate["assd"]["mean"] == pytest.approx(1.0, abs=1e-6)
    forced = evaluate_pairs([("a", p, g, (0.5, 0.2))], n_boot=10, distance_units="px")
    assert forced.units == "px" and forced.aggregate["hd95"]["mean"] == pytest.approx(2.0, abs=1e-6)


def test_mixed_spacing_refused_not_averaged():
    p, g = _squares()
    with pytest.raises(InputError, match="b_nospacing"):
        evaluate_pairs([("a", p, g, (0.5, 0.2)), ("b_nospacing", p, g, None)])
    with pytest.raises(InputError, match="spacing"):
        evaluate_pairs([("c", p, g, None)], distance_units="mm")
