"""Letterbox / centre-crop geometry and the inverse mapping back onto original pixels."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from sonoseg.io.types import ImageMeta, UltrasoundRegion
from sonoseg.preprocess import (
    GridTransform,
    PreprocessConfig,
    center_crop,
    letterbox,
    preprocess_image,
    preprocess_mask,
    resize_nearest,
)

RNG = np.random.default_rng(7)
SHAPES = [(97, 131), (131, 97), (255, 257), (33, 301), (120, 120)]
GRIDS = [(128, 128), (96, 160)]


def ellipse_mask(shape, rng, min_frac=0.25):
    h, w = shape
    m = np.zeros(shape, np.uint8)
    center = (int(rng.integers(w // 3, 2 * w // 3)), int(rng.integers(h // 3, 2 * h // 3)))
    axes = (int(rng.integers(max(3, w * min_frac // 2), w // 3)), int(rng.integers(max(3, h * min_frac // 2), h // 3)))
    cv2.ellipse(m, center, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return m


def iou(a, b):
    a, b = a > 0, b > 0
    return (a & b).sum() / max((a | b).sum(), 1)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("grid", GRIDS)
def test_letterbox_geometry(shape, grid):
    img = RNG.random(shape).astype(np.float32) + 1.0  # > 0 so padding (0) is recognisable
    out, t = letterbox(img, grid, pad_value=0.0)
    assert out.shape == grid and out.dtype == np.float32
    rh, rw = t.resized_shape
    # fits inside, touches at least one side, aspect ratio kept up to one pixel of rounding
    assert rh <= grid[0] and rw <= grid[1] and (rh == grid[0] or rw == grid[1])
    assert abs(rh / rw - shape[0] / shape[1]) <= (1 / min(rh, rw)) * (shape[0] / shape[1]) + 1e-9
    top, bottom, left, right = t.pad
    assert abs(top - bottom) <= 1 and abs(left - right) <= 1  # centred
    assert top + bottom + rh == grid[0] and left + right + rw == grid[1]
    # content = plain cv2 resize placed at the pad offset; padding = pad value
    interp = cv2.INTER_AREA if rh * rw < shape[0] * shape[1] else cv2.INTER_LINEAR
    ref = cv2.resize(img, (rw, rh), interpolation=interp)
    assert np.allclose(out[top : top + rh, left : left + rw], ref)
    assert (out[~t.valid_grid_mask()] == 0).all() and (out[t.valid_grid_mask()] > 0).all()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("grid", GRIDS)
def test_center_crop_geometry(shape, grid):
    img = RNG.random(shape).astype(np.float32)
    out, t = center_crop(img, grid)
    rh, rw = t.resized_shape
    assert out.shape == grid and rh >= grid[0] and rw >= grid[1] and (rh == grid[0] or rw == grid[1])
    cy, cx = t.crop
    assert abs((rh - grid[0] - cy) - cy) <= 1 and abs((rw - grid[1] - cx) - cx) <= 1  # centred
    interp = cv2.INTER_AREA if rh * rw < shape[0] * shape[1] else cv2.INTER_LINEAR
    ref = cv2.resize(img, (rw, rh), interpolation=interp)[cy : cy + grid[0], cx : cx + grid[1]]
    assert np.allclose(out, ref)
    assert t.valid_grid_mask().all() and t.pad == (0, 0, 0, 0)


@pytest.mark.parametrize("mode", ["letterbox", "crop"])
@pytest.mark.parametrize("shape", [(97, 131), (131, 97), (255, 257), (120, 120), (301, 203), (157, 311)])
def test_mask_round_trip_iou(mode, shape):
    """Smooth shapes that span >= ~30 grid pixels come back with IoU > 0.97 (resampling error only)."""
    for k in range(3):
        rng = np.random.default_rng(k + 17 * shape[0])
        mask = ellipse_mask(shape, rng, min_frac=0.5)
        t = GridTransform.build(shape, (128, 128), None, mode)
        if mode == "crop":  # only the visible part can come back
            visible = t.to_original(np.ones(t.grid_shape, np.uint8)) > 0
            mask = mask * visible
            if mask.sum() < 50:
                continue
        back = t.to_original(t.to_grid(mask, "nearest"), "nearest")
        assert back.shape == shape and back.dtype == mask.dtype
        assert iou(back, mask) > 0.97, (mode, shape, k)
        # probabilities via linear interpolation then threshold: at least as good
        soft = t.to_original(t.to_grid(mask.astype(np.float32), "linear"), "linear")
        assert iou(soft >= 0.5, mask) > 0.97


def test_round_trip_exact_when_enlarging_and_identity_at_scale_one():
    mask = (RNG.random((37, 53)) > 0.5).astype(np.uint8)  # worst case: pixel noise
    t = GridTransform.build(mask.shape, (128, 128), None, "letterbox")
    assert t.scale > 1
    assert np.array_equal(t.to_original(t.to_grid(mask)), mask)  # pixel-centre nearest is exact
    img = RNG.random((64, 64)).astype(np.float32)
    t1 = GridTransform.build(img.shape, (64, 64))
    assert t1.scale == 1.0 and t1.offset == (0, 0)
    for interp in ("nearest", "linear", "area", "auto"):
        assert np.array_equal(t1.to_grid(img, interp), img)
        assert np.array_equal(t1.to_original(img, interp), img)


def test_roi_pad_only_is_exact_and_outside_roi_is_zero():
    """ROI of 64 rows x 40 cols on a 64x64 grid: scale 1, pads only -> exact inverse incl. offset."""
    shape = (100, 90)
    labels = RNG.integers(0, 4, shape).astype(np.int64)
    roi = (20, 30, 84, 70)
    t = GridTransform.build(shape, (64, 64), roi, "letterbox")
    assert t.scale == 1.0 and t.offset == (0, 12) and t.pad == (0, 0, 12, 12)
    grid = t.to_grid(labels)
    assert grid.dtype == np.int64 and np.array_equal(grid[:, 12:52], labels[20:84, 30:70])
    back = t.to_original(grid)
    inside = np.zeros(shape, bool)
    inside[20:84, 30:70] = True
    assert np.array_equal(back[inside], labels[inside]) and not back[~inside].any()


@pytest.mark.parametrize("mode", ["letterbox", "crop"])
def test_roi_round_trip_with_offset(mode):
    shape = (181, 243)
    roi = (13, 27, 170, 220)
    t = GridTransform.build(shape, (96, 96), roi, mode)
    mask = np.zeros(shape, np.uint8)
    cv2.ellipse(mask, (120, 90), (60, 45), 30, 0, 360, 1, -1)
    back = t.to_original(t.to_grid(mask))
    assert iou(back, mask) > 0.97
    # the lesion moves with the ROI: centroid error below one original pixel
    cy, cx = np.argwhere(back).mean(0)
    ry, rx = np.argwhere(mask).mean(0)
    assert abs(cy - ry) < 1.0 and abs(cx - rx) < 1.0


def test_grid_points_to_original_matches_to_grid():
    shape = (150, 211)
    t = GridTransform.build(shape, (64, 96), (10, 20, 140, 200), "letterbox")
    for y, x in [(40, 60), (75, 150), (11, 21)]:
        m = np.zeros(shape, np.uint8)
        m[y - 3 : y + 4, x - 3 : x + 4] = 1
        g = t.to_grid(m.astype(np.float32), "linear")
        gy, gx = np.unravel_index(np.argmax(g), g.shape)
        (oy, ox), = t.grid_points_to_original([[gy, gx]])
        assert abs(oy - y) <= 1.0 / t.scale_yx[0] + 0.5 and abs(ox - x) <= 1.0 / t.scale_yx[1] + 0.5


def test_transform_serialises_to_json():
    t = GridTransform.build((480, 640), (256, 256), (31, 84, 415, 596), "crop")
    d = json.loads(json.dumps(t.to_dict()))
    assert GridTransform.from_dict(d) == t
    assert t.grid_spacing((0.2, 0.2))[0] == pytest.approx(0.2 * 384 / t.resized_shape[0])


def test_resize_nearest_matches_pixel_centre_formula():
    a = np.arange(7 * 9).reshape(7, 9)
    out = resize_nearest(a, (16, 20))
    iy = np.floor((np.arange(16) + 0.5) * 7 / 16).astype(int)
    ix = np.floor((np.arange(20) + 0.5) * 9 / 20).astype(int)
    assert np.array_equal(out, a[iy][:, ix])


def test_shape_checks():
    t = GridTransform.build((50, 60), (32, 32))
    with pytest.raises(ValueError):
        t.to_grid(np.zeros((49, 60)))
    with pytest.raises(ValueError):
        t.to_original(np.zeros((50, 60)))
    with pytest.raises(ValueError):
        GridTransform.build((50, 60), (32, 32), (10, 10, 10, 20))


# ---------------- masks through the pipeline ----------------
def test_preprocess_mask_labels_and_binary_conversion():
    shape = (90, 130)
    t = GridTransform.build(shape, (64, 64), None, "letterbox")
    labels = np.zeros(shape, np.uint8)
    labels[10:40, 10:60] = 1
    labels[50:80, 70:120] = 2
    labels[20:30, 100:110] = 5
    out = preprocess_mask(labels, t)
    assert out.dtype == np.uint8 and set(np.unique(out)) == {0, 1, 2, 5}
    b255 = (labels > 0).astype(np.uint8) * 255
    assert set(np.unique(preprocess_mask(b255, t))) == {0, 1}
    assert np.array_equal(preprocess_mask(b255, t), preprocess_mask(labels > 0, t))
    rgb = np.dstack([b255] * 3)
    assert np.array_equal(preprocess_mask(rgb, t), preprocess_mask(b255, t))
    blurred = cv2.GaussianBlur(b255, (5, 5), 1.5)  # anti-aliased edges -> thresholded
    assert set(np.unique(preprocess_mask(blurred, t))) == {0, 1}


def test_pipeline_mask_aligns_with_image_and_comes_back():
    """A bright square in the image lands where its mask lands, and returns to the same pixels."""
    shape = (140, 230)
    img = np.full(shape, 40, np.uint8)
    mask = np.zeros(shape, np.uint8)
    mask[60:100, 150:200] = 255
    img[mask > 0] = 220
    meta = ImageMeta(path="x.dcm", format="dicom", us_regions=[UltrasoundRegion(x0=100, y0=20, x1=219, y1=129)])
    cfg = PreprocessConfig(roi="dicom", size=(96, 96), clahe=False)
    pre = preprocess_image(img, cfg, meta)
    assert pre.transform.roi == (20, 100, 130, 220)
    g = preprocess_mask(mask, pre.transform)
    assert pre.image[g == 1].mean() > 0.9 and pre.image[(g == 0) & pre.transform.valid_grid_mask()].mean() < 0.1
    back = pre.transform.to_original(g)
    assert iou(back, mask) > 0.95 and back.shape == shape
