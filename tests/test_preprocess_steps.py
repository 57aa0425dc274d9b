"""Intensity steps, each checked against an independent computation (numpy/scipy/skimage/cv2)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage
from skimage import exposure

from sonoseg.errors import ConfigError
from sonoseg.preprocess import (
    PreprocessConfig,
    Preprocessor,
    apply_clahe,
    median_filter,
    normalize,
    preprocess_image,
    to_grayscale,
    to_uint8,
)

RNG = np.random.default_rng(1234)


# ---------------- grayscale ----------------
def test_grayscale_rgb_is_bt601_luminance():
    rgb = RNG.integers(0, 256, (37, 51, 3), dtype=np.uint8)
    expected = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    got = to_grayscale(rgb)
    assert got.shape == (37, 51) and got.dtype == np.uint8
    assert np.abs(got.astype(np.float64) - expected).max() <= 1.0


def test_grayscale_float_and_rgba_and_singleton():
    rgb = RNG.random((9, 11, 3))  # float64 path (no cv2)
    assert np.allclose(to_grayscale(rgb), rgb @ np.array([0.299, 0.587, 0.114]))
    rgba = np.dstack([rgb.astype(np.float32), np.zeros((9, 11), np.float32)])
    assert np.allclose(to_grayscale(rgba), to_grayscale(rgb.astype(np.float32)), atol=1e-6)
    g = RNG.integers(0, 65535, (8, 10, 1), dtype=np.uint16)
    assert np.array_equal(to_grayscale(g), g[..., 0])
    two_d = RNG.integers(0, 255, (8, 10), dtype=np.uint8)
    assert to_grayscale(two_d) is two_d


def test_grayscale_ybr_takes_luma_only_when_still_encoded():
    y = RNG.integers(0, 256, (20, 30), dtype=np.uint8)
    ybr = np.dstack([y, np.full_like(y, 128), np.full_like(y, 128)])  # still YBR: chroma ~ 128
    assert np.array_equal(to_grayscale(ybr, "YBR_FULL_422"), y)
    rgb_gray = np.dstack([y, y, y])  # decoder already converted to RGB, header still says YBR
    assert np.abs(to_grayscale(rgb_gray, "YBR_FULL_422").astype(int) - y).max() <= 1


def test_grayscale_rejects_bad_shapes():
    with pytest.raises(ValueError):
        to_grayscale(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ValueError):
        to_grayscale(np.zeros((2, 4, 4, 3), np.uint8))


# ---------------- uint8 ----------------
def test_to_uint8_minmax_for_uint16_and_passthrough_for_uint8():
    x = RNG.integers(1000, 40000, (13, 17), dtype=np.uint16)
    expected = np.rint((x - x.min()) / (x.max() - x.min()) * 255).astype(np.uint8)
    got = to_uint8(x)
    assert got.dtype == np.uint8 and np.array_equal(got, expected)
    assert got.min() == 0 and got.max() == 255
    u8 = RNG.integers(20, 200, (5, 6), dtype=np.uint8)
    assert np.array_equal(to_uint8(u8), u8)  # display-ready 8-bit is not stretched


def test_to_uint8_edge_cases():
    assert not to_uint8(np.full((4, 4), 7.5)).any()
    assert np.array_equal(to_uint8(np.eye(3, dtype=bool)), np.eye(3, dtype=np.uint8) * 255)
    f = np.array([[0.0, np.nan], [0.5, 1.0]])
    assert to_uint8(f).tolist() == [[0, 0], [128, 255]]


# ---------------- median ----------------
@pytest.mark.parametrize("shape", [(31, 47), (64, 65)])
@pytest.mark.parametrize("k", [3, 5])
def test_median_matches_scipy(shape, k):
    img = RNG.integers(0, 256, shape, dtype=np.uint8)
    ours = median_filter(img, k)
    ref = ndimage.median_filter(img, size=k, mode="nearest")  # cv2 replicates borders
    assert np.array_equal(ours, ref)


def test_median_removes_salt_noise_and_validates_kernel():
    img = np.full((21, 21), 100, np.uint8)
    img[10, 10] = 255
    assert median_filter(img, 3)[10, 10] == 100
    assert median_filter(img, 1) is img and median_filter(img, 0) is img
    with pytest.raises(ConfigError):
        median_filter(img, 4)


# ---------------- CLAHE ----------------
def _low_contrast(shape=(96, 128)):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (100 + 20 * np.sin(xx / 9.0) * np.cos(yy / 7.0) + RNG.normal(0, 3, shape)).clip(0, 255).astype(np.uint8)


def test_clahe_equals_opencv_with_rows_cols_convention():
    img = _low_contrast()
    ours = apply_clahe(img, 3.0, (4, 2))  # 4 tile rows, 2 tile columns
    ref = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(2, 4)).apply(img)  # OpenCV: (cols, rows)
    assert np.array_equal(ours, ref)


def test_clahe_clip_limit_controls_contrast():
    img = _low_contrast()
    low, high = apply_clahe(img, 1.0, (8, 8)), apply_clahe(img, 4.0, (8, 8))
    assert not np.array_equal(low, high)
    assert high.astype(float).std() > low.astype(float).std() > img.astype(float).std()


def test_clahe_single_tile_unclipped_is_global_equalisation():
    img = _low_contrast()
    ours = apply_clahe(img, 1000.0, (1, 1)).astype(float)
    ref = exposure.equalize_hist(img, nbins=256) * 255  # independent implementation
    assert np.abs(ours - ref).mean() < 2.0


def test_clahe_tile_grid_rows_vs_cols():
    """Left half dark, right half bright: two tile columns equalise each half on its own, two tile
    rows do not (each row tile holds both halves)."""
    h, w = 64, 128
    img = np.empty((h, w), np.uint8)
    img[:, : w // 2] = RNG.integers(30, 60, (h, w // 2))
    img[:, w // 2 :] = RNG.integers(170, 200, (h, w // 2))
    by_cols = apply_clahe(img, 40.0, (1, 2))
    by_rows = apply_clahe(img, 40.0, (2, 1))
    left = slice(0, w // 8)
    assert by_cols[:, left].mean() > 90  # stretched within its own tile
    assert by_rows[:, left].mean() < 80  # still the dark half of a shared histogram


def test_clahe_rejects_float_and_bad_grid():
    with pytest.raises(ValueError):
        apply_clahe(np.zeros((8, 8), np.float32))
    with pytest.raises(ConfigError):
        apply_clahe(np.zeros((8, 8), np.uint8), 2.0, (0, 4))


# ---------------- normalisation ----------------
def test_normalize_minmax():
    x = RNG.normal(50, 10, (23, 29))
    out = normalize(x, "minmax")
    assert out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == pytest.approx(1.0)
    assert np.allclose(out, (x - x.min()) / (x.max() - x.min()), atol=1e-6)
    assert not normalize(np.full((3, 3), 4.0), "minmax").any()


def test_normalize_zscore():
    x = RNG.integers(0, 255, (40, 50)).astype(np.uint8)
    out = normalize(x, "zscore")
    assert out.dtype == np.float32
    assert abs(float(out.mean())) < 1e-5 and float(out.std()) == pytest.approx(1.0, abs=1e-5)
    assert np.allclose(out * x.std() + x.mean(), x, atol=1e-3)


def test_normalize_percentile_window():
    x = RNG.normal(0, 1, (100, 100))
    x[0, 0], x[0, 1] = 1e6, -1e6  # outliers must not set the window
    lo, hi = np.percentile(x, [2, 98])
    out = normalize(x, "percentile", (2, 98))
    assert np.allclose(out, (np.clip(x, lo, hi) - lo) / (hi - lo), atol=1e-6)
    assert out.min() == 0.0 and out.max() == pytest.approx(1.0)
    assert np.mean(out == 1.0) == pytest.approx(0.02, abs=0.002)


def test_normalize_rejects_bad_input():
    with pytest.raises(ConfigError):
        normalize(np.zeros((3, 3)), "percentile", (50, 10))
    with pytest.raises(ConfigError):
        normalize(np.zeros((3, 3)), "l2")  # type: ignore[arg-type]


# ---------------- the chain ----------------
def test_chain_equals_manual_composition():
    """preprocess_image == the documented steps done by hand with OpenCV/numpy."""
    img = RNG.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    cfg = PreprocessConfig(roi="none", size=(64, 64), clahe_clip_limit=2.5, clahe_tile_grid=(4, 4))
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    med = cv2.medianBlur(gray, 3)
    eq = cv2.createCLAHE(clipLimit=2.5, tileGridSize=(4, 4)).apply(med).astype(np.float32)
    norm = (eq - eq.min()) / (eq.max() - eq.min())
    resized = cv2.resize(norm, (64, 48), interpolation=cv2.INTER_AREA)  # 120x90 -> 64x48 (aspect kept)
    expected = np.zeros((64, 64), np.float32)
    expected[8:56] = resized
    out = preprocess_image(img, cfg)
    assert out.image.dtype == np.float32 and out.image.shape == (64, 64)
    assert np.allclose(out.image, expected, atol=1e-6)
    assert np.allclose(Preprocessor(cfg)(img).image, out.image)


def test_chain_sixteen_bit_and_steps_switch_off():
    img = (RNG.random((50, 70)) * 4000 + 500).astype(np.uint16)
    cfg = PreprocessConfig(roi="none", size=(50, 70), median_kernel=0, clahe=False, normalize="minmax")
    out = preprocess_image(img, cfg).image
    assert np.allclose(out, to_uint8(img) / 255.0, atol=1e-6)  # identity geometry, min-max only


def test_chain_keeps_colour_when_grayscale_off():
    img = RNG.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    out = preprocess_image(img, PreprocessConfig(roi="none", grayscale=False, size=(32, 32))).image
    assert out.shape == (32, 32, 3) and out.dtype == np.float32


def test_chain_zscore_and_pad_value():
    img = RNG.integers(0, 256, (40, 80), dtype=np.uint8)
    cfg = PreprocessConfig(roi="none", size=(64, 64), normalize="zscore", pad_value=-3.0)
    pre = preprocess_image(img, cfg)
    valid = pre.transform.valid_grid_mask()
    assert (pre.image[~valid] == -3.0).all()
    assert abs(float(pre.image[valid].mean())) < 0.05


# ---------------- CLI ----------------
def _cli(args):
    from typer.testing import CliRunner

    from sonoseg.cli.main import app

    return CliRunner().invoke(app, ["preprocess", *args])


def test_cli_preprocess_writes_grid_png_transform_and_figure(tmp_path):
    import json

    from sonoseg.data.phantom import make_phantom

    pytest.importorskip("sonoseg.io")
    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        cv2.imwrite(str(src / f"img{i}.png"), make_phantom((100, 140), sector=True, ui_overlay=True, seed=i).image)
    (src / "broken.png").write_bytes(b"not a png at all")
    out = tmp_path / "out"
    res = _cli([str(src / "img0.png"), str(src / "img1.png"), str(src / "broken.png"), "--out", str(out),
                "--set", "preprocess.size=[48,64]", "--set", "preprocess.roi=auto"])
    assert res.exit_code == 0, res.output
    assert "preprocessed 2 of 3" in res.output and "1 skipped" in res.output
    grid = cv2.imread(str(out / "img0.png"), cv2.IMREAD_UNCHANGED)
    assert grid.shape == (48, 64) and grid.dtype == np.uint8
    ref = preprocess_image(cv2.imread(str(src / "img0.png"), cv2.IMREAD_GRAYSCALE), PreprocessConfig(size=(48, 64), roi="auto"))
    assert np.abs(grid.astype(int) - np.rint(ref.image * 255).astype(int)).max() <= 1
    t = json.loads((out / "img0.json").read_text())["transform"]
    assert tuple(t["roi"]) == ref.transform.roi
    fig = cv2.imread(str(out / "img0_before_after.png"))
    assert fig is not None and fig.shape[1] > fig.shape[0]


def test_cli_preprocess_all_frames_and_total_failure(tmp_path):
    pytest.importorskip("sonoseg.io")
    frames = [np.full((40, 50), v, np.uint8) + np.arange(50, dtype=np.uint8) for v in (10, 90)]
    tif = tmp_path / "cine.tiff"
    assert cv2.imwritemulti(str(tif), frames)
    out = tmp_path / "o"
    res = _cli([str(tif), "--out", str(out), "--all-frames", "--no-figure"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.glob("*.png")) == ["cine_f000.png", "cine_f001.png"]
    first = _cli([str(tif), "--out", str(tmp_path / "o1"), "--no-figure"])
    assert first.exit_code == 0 and [p.name for p in (tmp_path / "o1").glob("*.png")] == ["cine.png"]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x00" * 10)
    res = _cli([str(bad), str(tmp_path / "missing.dcm"), "--out", str(tmp_path / "o2")])
    assert res.exit_code != 0
    assert "0 of 2" in res.output


# -- normalising after the resize (fast order) equals the documented order --------------------------
def _reference_preprocess(img, cfg):
    """The documented order written out step by step: normalise the whole ROI, then resize."""
    from sonoseg.preprocess.geometry import GridTransform
    from sonoseg.preprocess.roi import find_roi
    from sonoseg.preprocess.steps import apply_clahe, median_filter, normalize, to_uint8

    box = find_roi(img, None, cfg.roi)
    y0, x0, y1, x1 = box
    work = median_filter(to_uint8(img[y0:y1, x0:x1]), cfg.median_kernel)
    if cfg.clahe:
        work = apply_clahe(work, cfg.clahe_clip_limit, cfg.clahe_tile_grid)
    norm = normalize(work, cfg.normalize, cfg.percentile_window)
    t = GridTransform.build(img.shape[:2], cfg.size, box, cfg.resize_mode)
    return t.roi_to_grid(norm, "auto", fill=cfg.pad_value)


@pytest.mark.parametrize("method", ["minmax", "zscore", "percentile"])
@pytest.mark.parametrize("mode", ["letterbox", "crop"])
@pytest.mark.parametrize("shape", [(471, 562), (120, 100), (300, 300, 3)])
def test_preprocess_normalising_after_resize_matches_reference(method, mode, shape):
    from sonoseg.preprocess import PreprocessConfig, preprocess_image

    rng = np.random.default_rng(sum(shape))
    img = cv2.GaussianBlur(rng.integers(0, 256, shape, dtype=np.uint8), (0, 0), 3)
    img[: shape[0] // 5] = 0  # a dark band, so min/max come from image content
    cfg = PreprocessConfig(normalize=method, resize_mode=mode, pad_value=-1.0, grayscale=len(shape) == 2,
                           size=(256, 192))
    got = preprocess_image(img, cfg).image
    ref = _reference_preprocess(img, cfg)
    assert got.shape == ref.shape and got.dtype == np.float32
    spread = float(ref.max() - ref.min())
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-6 * max(spread, 1.0))
    if mode == "letterbox":
        assert (got == -1.0).any()  # the pad keeps pad_value, it is not normalised


def test_preprocess_constant_roi_gives_zeros_inside_and_pad_outside():
    from sonoseg.preprocess import PreprocessConfig, preprocess_image

    img = np.full((100, 200), 77, np.uint8)
    out = preprocess_image(img, PreprocessConfig(clahe=False, pad_value=0.5, size=(64, 64))).image
    assert np.all((out == 0.0) | (out == 0.5)) and (out == 0.0).sum() == 64 * 32 and (out == 0.5).sum() == 64 * 32
