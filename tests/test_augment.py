"""Joint image/mask augmentation: labels preserved, identical geometry, seeds, seed-004 ranges."""

from __future__ import annotations

import numpy as np
import pytest

from sonoseg.config import AugmentConfig
from sonoseg.data.augment import Augmenter, Speckle, build_augmentation
from sonoseg.data.phantom import make_phantom
from sonoseg.preprocess import PreprocessConfig, preprocess_image, preprocess_mask

GEOMETRY_ONLY = dict(brightness_contrast_p=0.0, gauss_noise_p=0.0, speckle_p=0.0)


def phantom_sample(seed=0, size=(96, 96)):
    ph = make_phantom((128, 128), n_lesions=1, seed=seed)
    pre = preprocess_image(ph.image, PreprocessConfig(size=size, median_kernel=5))
    return pre.image, preprocess_mask(ph.mask, pre.transform)


def centroid(mask):
    return np.argwhere(mask > 0).mean(0)


def test_disabled_or_empty_gives_none():
    assert build_augmentation(AugmentConfig(enabled=False)) is None
    nothing = AugmentConfig(hflip=0, vflip=0, affine_p=0, brightness_contrast_p=0, gauss_noise_p=0, speckle_p=0)
    assert build_augmentation(nothing) is None
    assert callable(build_augmentation(AugmentConfig()))


@pytest.mark.parametrize("dtype", [np.uint8, np.int64])
def test_masks_keep_original_labels_and_types(dtype):
    rng = np.random.default_rng(0)
    img = rng.random((64, 80)).astype(np.float32)
    mask = np.zeros((64, 80), dtype)
    mask[10:30, 10:40] = 1
    mask[35:60, 45:75] = 2
    mask[5:12, 60:70] = 7
    aug = build_augmentation(AugmentConfig(affine_p=1.0, rotate_limit=30, gauss_noise_p=0.5, speckle_p=0.5), seed=1)
    for _ in range(25):
        a, m = aug(img, mask)
        assert a.dtype == np.float32 and a.shape == img.shape
        assert m.dtype == mask.dtype and m.shape == mask.shape
        assert set(np.unique(m)) <= {0, 1, 2, 7}


def test_geometry_identical_for_image_and_mask():
    """Image = the mask itself: after augmentation the (linearly resampled) image still matches
    the (nearest) mask almost everywhere."""
    mask = np.zeros((96, 96), np.uint8)
    mask[30:70, 20:60] = 1
    aug = build_augmentation(AugmentConfig(affine_p=1.0, hflip=0.5, vflip=0.5, rotate_limit=30, **GEOMETRY_ONLY), seed=3)
    moved = 0
    for _ in range(20):
        a, m = aug(mask.astype(np.float32), mask)
        agree = ((a > 0.5) == (m > 0)).mean()
        assert agree > 0.98
        moved += not np.array_equal(m, mask)
    assert moved >= 15


def test_phantom_lesion_moves_with_its_mask():
    img, mask = phantom_sample()
    aug = build_augmentation(AugmentConfig(affine_p=1.0, hflip=0.5, **GEOMETRY_ONLY), seed=5)
    for _ in range(15):
        a, m = aug(img, mask)
        if m.sum() < 30:
            continue  # lesion shifted off the grid
        inside = a[m == 1].mean()
        tissue = a[(m == 0) & (a > 0.05)].mean()
        assert inside < 0.75 * tissue


def test_deterministic_with_seed():
    img, mask = phantom_sample(1)
    cfg = AugmentConfig(affine_p=1.0, gauss_noise_p=0.5, speckle_p=0.5)
    a1, a2, b = build_augmentation(cfg, seed=42), build_augmentation(cfg, seed=42), build_augmentation(cfg, seed=43)
    out1 = [a1(img, mask) for _ in range(5)]
    out2 = [a2(img, mask) for _ in range(5)]
    out3 = [b(img, mask) for _ in range(5)]
    assert all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(out1, out2))
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(out1, out3))
    a1.reseed(42)
    assert np.array_equal(a1(img, mask)[0], out1[0][0])


def test_shift_range_is_honoured():
    """Seed 004: shifts up to 20 % of height / width; the whole range gets used."""
    h, w = 100, 120
    mask = np.zeros((h, w), np.uint8)
    mask[45:55, 55:65] = 1
    cfg = AugmentConfig(hflip=0, rotate_limit=0, scale_range=(1.0, 1.0), shift_limit=0.2, affine_p=1.0, **GEOMETRY_ONLY)
    aug = build_augmentation(cfg, seed=0)
    c0 = centroid(mask)
    shifts = np.array([centroid(aug(mask.astype(np.float32), mask)[1]) - c0 for _ in range(150)])
    assert np.abs(shifts[:, 0]).max() <= 0.2 * h + 1 and np.abs(shifts[:, 1]).max() <= 0.2 * w + 1
    assert np.abs(shifts[:, 0]).max() > 0.15 * h and np.abs(shifts[:, 1]).max() > 0.15 * w
    assert (shifts[:, 0] < 0).any() and (shifts[:, 0] > 0).any()


def test_scale_range_is_honoured():
    """Seed 004: zoom 0.5x to 2x, same factor on both axes (aspect kept)."""
    mask = np.zeros((128, 128), np.uint8)
    mask[54:74, 49:79] = 1  # 20 x 30, centred
    cfg = AugmentConfig(hflip=0, rotate_limit=0, shift_limit=0.0, scale_range=(0.5, 2.0), affine_p=1.0, **GEOMETRY_ONLY)
    aug = build_augmentation(cfg, seed=0)
    ratios, aspects = [], []
    for _ in range(120):
        m = aug(mask.astype(np.float32), mask)[1]
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        ratios.append(m.sum() / mask.sum())
        aspects.append((cols[-1] - cols[0] + 1) / (rows[-1] - rows[0] + 1))
    ratios = np.array(ratios)
    assert ratios.min() >= 0.25 * 0.85 and ratios.max() <= 4.0 * 1.15
    assert ratios.min() < 0.4 and ratios.max() > 3.0
    assert 0.3 < np.mean(ratios < 1.0) < 0.7  # "increase or decrease": both directions equally often
    assert np.allclose(aspects, 1.5, atol=0.2)


def test_intensity_transforms_leave_mask_and_zscore_range_alone():
    rng = np.random.default_rng(2)
    z = rng.normal(0, 1, (64, 64)).astype(np.float32)
    mask = (rng.random((64, 64)) > 0.5).astype(np.uint8)
    cfg = AugmentConfig(hflip=0, affine_p=0, brightness_contrast_p=1.0, gauss_noise_p=1.0, speckle_p=1.0)
    aug = build_augmentation(cfg, seed=0)
    for _ in range(5):
        a, m = aug(z, mask)
        assert np.array_equal(m, mask)
        assert a.min() < -1.0 and a.max() > 1.0  # not clipped to [0, 1]
        assert np.corrcoef(a.ravel(), z.ravel())[0, 1] > 0.7


def test_speckle_is_multiplicative_gaussian():
    t = Speckle(sigma_range=(0.1, 0.1), p=1.0)
    t.set_random_seed(0)
    flat = np.full((200, 200), 0.5, np.float32)
    out = t(image=flat)["image"]
    assert out.mean() == pytest.approx(0.5, abs=0.005) and out.std() == pytest.approx(0.05, abs=0.003)
    dark = np.full((200, 200), 0.1, np.float32)
    assert t(image=dark)["image"].std() == pytest.approx(0.01, abs=0.001)  # scales with intensity


def test_shape_mismatch_raises():
    aug = Augmenter(AugmentConfig(), seed=0)
    with pytest.raises(ValueError):
        aug(np.zeros((10, 10), np.float32), np.zeros((10, 11), np.uint8))


def _child(aug, img, mask, queue):
    queue.put(aug(img, mask)[0])


def test_forked_workers_do_not_replay_the_same_stream():
    import multiprocessing as mp

    if "fork" not in mp.get_all_start_methods():
        pytest.skip("needs fork")
    img, mask = phantom_sample(2, size=(48, 48))
    aug = build_augmentation(AugmentConfig(affine_p=1.0, **GEOMETRY_ONLY), seed=9)
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_child, args=(aug, img, mask, q)) for _ in range(2)]
    for p in procs:
        p.start()
    outs = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    parent = aug(img, mask)[0]
    assert not np.array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], parent) and not np.array_equal(outs[1], parent)


def test_fill_value_for_zoomed_out_border():
    img = np.ones((64, 64), np.float32)
    cfg = AugmentConfig(hflip=0, rotate_limit=0, shift_limit=0, scale_range=(0.5, 0.5), affine_p=1.0, **GEOMETRY_ONLY)
    a, _ = build_augmentation(cfg, seed=0, fill=-2.0)(img, np.zeros((64, 64), np.uint8))
    assert a[0, 0] == -2.0 and a[32, 32] == 1.0


def _child_explicit(aug, img, mask, seed, queue):
    aug.reseed(seed)  # what a worker_init_fn does
    queue.put(aug(img, mask)[0])


def test_explicit_reseed_in_worker_wins_over_automatic_one():
    import multiprocessing as mp

    if "fork" not in mp.get_all_start_methods():
        pytest.skip("needs fork")
    img, mask = phantom_sample(2, size=(48, 48))
    aug = build_augmentation(AugmentConfig(affine_p=1.0, **GEOMETRY_ONLY), seed=9)
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_explicit, args=(aug, img, mask, 123, q))
    p.start()
    child = q.get(timeout=60)
    p.join(timeout=60)
    aug.reseed(123)
    assert np.array_equal(child, aug(img, mask)[0])
