"""Mask post-processing on constructed masks, and flip test-time augmentation (tta.py)."""

from __future__ import annotations

import numpy as np
import pytest

from sonoseg.evaluate import postprocess, tta_predict
from sonoseg.infer.tta import flip_sets


def _three_blobs():
    m = np.zeros((20, 20), np.uint8)
    m[1:4, 1:4] = 1  # 9 px
    m[10:12, 10:12] = 1  # 4 px
    m[17, 17] = 1  # 1 px
    return m


def test_keep_largest():
    out = postprocess(_three_blobs(), keep_largest=True)
    exp = np.zeros((20, 20), np.uint8)
    exp[1:4, 1:4] = 1
    assert np.array_equal(out, exp)


def test_min_size_keeps_components_at_threshold():
    out = postprocess(_three_blobs(), min_size=4)
    assert out.sum() == 13 and out[17, 17] == 0 and out[10, 10] == 1
    assert postprocess(_three_blobs(), min_size=5).sum() == 9
    assert np.array_equal(postprocess(_three_blobs()), _three_blobs())  # no-op by default


def test_min_area_in_mm2_uses_spacing():
    # pixel area 0.5 * 0.5 = 0.25 mm^2: 1 mm^2 = 4 px, 1.5 mm^2 = 6 px
    assert postprocess(_three_blobs(), min_area_mm2=1.0, spacing=(0.5, 0.5)).sum() == 13
    assert postprocess(_three_blobs(), min_area_mm2=1.5, spacing=(0.5, 0.5)).sum() == 9
    with pytest.raises(ValueError, match="spacing"):
        postprocess(_three_blobs(), min_area_mm2=1.0)


def test_fill_holes_but_not_border_notch():
    m = np.zeros((10, 10), bool)
    m[2:7, 2:7] = True
    m[4, 4] = False  # enclosed hole
    ring_open = np.zeros((10, 10), bool)
    ring_open[5:10, 0:4] = True
    ring_open[7:10, 1:3] = False  # a notch open to the image border: not a hole
    m |= ring_open
    out = postprocess(m, fill_holes=True)
    assert out.dtype == bool
    assert out[4, 4] and out.sum() == m.sum() + 1
    assert not out[8, 1] and not out[9, 2]


def test_keep_largest_then_fill_drops_speck_inside_hole():
    m = np.zeros((15, 15), np.uint8)
    m[2:13, 2:13] = 1
    m[5:10, 5:10] = 0  # 25 px hole
    m[7, 7] = 1  # speck inside the hole
    out = postprocess(m, keep_largest=True, fill_holes=True)
    assert out.sum() == 11 * 11


def test_connectivity():
    m = np.zeros((6, 6), np.uint8)
    m[1, 1] = m[2, 2] = m[3, 3] = 1  # a diagonal line
    assert postprocess(m, min_size=3).sum() == 3  # 8-connected: one component of 3
    assert postprocess(m, min_size=3, connectivity=1).sum() == 0  # 4-connected: three singletons


def test_uint8_255_mask_keeps_encoding():
    out = postprocess(_three_blobs() * 255, keep_largest=True)
    assert out.dtype == np.uint8 and set(np.unique(out)) == {0, 255} and (out == 255).sum() == 9


def test_multiclass_per_class():
    m = np.zeros((16, 16), np.uint8)
    m[1:8, 1:8] = 1
    m[3:6, 3:6] = 2  # class 2 inside class 1: must survive fill_holes of class 1
    m[12, 12] = 1  # small class-1 speck
    m[14, 1:4] = 2  # second class-2 component (3 px) vs 9 px
    m[1:8, 10:15] = 1
    m[4, 12] = 0  # hole in the second class-1 region
    out = postprocess(m, keep_largest=True, fill_holes=True, classes=3)
    exp = np.zeros_like(m)
    exp[1:8, 1:8] = 1
    exp[3:6, 3:6] = 2
    assert np.array_equal(out, exp)
    out2 = postprocess(m, min_size=2, fill_holes=True, classes=3)
    assert out2[12, 12] == 0 and out2[4, 12] == 1 and (out2[14, 1:4] == 2).all() and (out2[3:6, 3:6] == 2).all()


# ---------------------------------------------------------------- test-time augmentation


def _ramp_model(x: np.ndarray) -> np.ndarray:
    """Not flip-equivariant: weights depend on absolute position (rows and columns)."""
    h, w = x.shape[-2:]
    wgt = np.outer(np.arange(1, h + 1), np.arange(1, w + 1) ** 2).astype(np.float64)
    return x * wgt


def test_flip_sets():
    assert flip_sets(("h",)) == [(), (-1,)]
    assert flip_sets(("h", "v")) == [(), (-1,), (-2,), (-1, -2)]
    with pytest.raises(ValueError):
        flip_sets(("x",))


def test_tta_unflips_outputs_hand_computed():
    rng = np.random.default_rng(0)
    x = rng.random((5, 7))
    h, w = x.shape
    r = np.arange(1, h + 1)[:, None].astype(float)
    c = (np.arange(1, w + 1) ** 2)[None, :].astype(float)
    # unflip(f(flip_h(x))) = x * r * c[::-1]  (the weights get mirrored, the image does not)
    exp_h = x * r * (c + c[:, ::-1]) / 2
    assert np.allclose(tta_predict(_ramp_model, x, ("h",)), exp_h, rtol=1e-6)
    exp_hv = x * (r * c + r * c[:, ::-1] + r[::-1] * c + r[::-1] * c[:, ::-1]) / 4
    assert np.allclose(tta_predict(_ramp_model, x, ("h", "v")), exp_hv, rtol=1e-6)
    # forgetting to un-flip would give a different answer
    wrong = (_ramp_model(x) + _ramp_model(x[:, ::-1])) / 2
    assert not np.allclose(tta_predict(_ramp_model, x, ("h",)), wrong)


def test_tta_channels_and_equivariant_model():
    x = np.random.default_rng(1).normal(size=(2, 6, 8)).astype(np.float32)

    def sigmoid_model(a):  # pixel-wise: flip-equivariant, so TTA changes nothing
        return 1 / (1 + np.exp(-a.sum(axis=0, keepdims=True)))

    out = tta_predict(sigmoid_model, x, ("h", "v"))
    assert out.shape == (1, 6, 8) and out.dtype == np.float32
    assert np.allclose(out, sigmoid_model(x), atol=1e-6)

    def shift_model(a):  # multi-class output shifted right by one pixel: position-dependent
        y = np.zeros((3,) + a.shape[-2:])
        y[0, :, 1:] = a[0, :, :-1]
        return y

    got = tta_predict(shift_model, x, ("h",))
    # unflip(shift(flip(x))) = x shifted left by one
    left = np.zeros((3, 6, 8))
    left[0, :, :-1] = x[0, :, 1:]
    assert np.allclose(got, (shift_model(x) + left) / 2, atol=1e-6)
