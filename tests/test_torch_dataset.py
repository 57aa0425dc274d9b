"""SegmentationDataset: items equal the direct preprocessing, the disk cache skips decode/median/CLAHE
on later passes and is keyed by file + config, multi-class label maps, augmentation, seeded loaders."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sonoseg.data import torch_dataset
from sonoseg.data.layout import Sample, discover_dataset
from sonoseg.data.phantom import write_phantom_dataset
from sonoseg.data.torch_dataset import SegmentationDataset, make_loader
from sonoseg.errors import InputError
from sonoseg.io import load_image
from sonoseg.preprocess import PreprocessConfig, preprocess_image, preprocess_mask

torch.set_num_threads(1)

CFG = PreprocessConfig(size=(32, 32), roi="none")


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ph")
    write_phantom_dataset(root, n=6, size=(64, 80), seed=2)
    return root


def _expected(sample: Sample, cfg: PreprocessConfig):
    """Independent path: io + preprocess called directly, mask read with OpenCV."""
    li = load_image(sample.image_path)
    pre = preprocess_image(li.pixels, cfg, meta=li.meta)
    mask = cv2.imread(str(sample.mask_path), cv2.IMREAD_UNCHANGED)
    return pre.image, preprocess_mask(mask, pre.transform)


def test_items_match_direct_preprocessing(phantoms, tmp_path):
    samples = discover_dataset(phantoms, require_masks=True)
    ds = SegmentationDataset(samples, CFG, cache_dir=tmp_path / "c")
    assert len(ds) == 6
    for i in (0, 3):
        item = ds[i]
        img, m = _expected(samples[i], CFG)
        assert item["image"].dtype == torch.float32 and item["image"].shape == (1, 32, 32)
        assert item["mask"].dtype == torch.float32 and item["mask"].shape == (1, 32, 32)
        assert item["stem"] == samples[i].stem and item["index"] == i
        np.testing.assert_array_equal(item["image"][0].numpy(), img)
        np.testing.assert_array_equal(item["mask"][0].numpy(), (m > 0).astype(np.float32))
        assert set(np.unique(item["mask"].numpy())) == {0.0, 1.0}


def test_second_pass_reads_cache_without_preprocessing(phantoms, tmp_path, monkeypatch):
    samples = discover_dataset(phantoms, require_masks=True)
    first = [SegmentationDataset(samples, CFG, cache_dir=tmp_path / "c")[i] for i in range(6)]
    assert len(list((tmp_path / "c").glob("*.npz"))) == 6

    def boom(*a, **k):
        raise AssertionError("preprocessing called on a cached sample")

    monkeypatch.setattr(torch_dataset, "preprocess_image", boom)
    monkeypatch.setattr(torch_dataset, "load_image", boom)
    ds2 = SegmentationDataset(samples, CFG, cache_dir=tmp_path / "c")  # a fresh instance, same cache
    for i in range(6):
        item = ds2[i]
        assert torch.equal(item["image"], first[i]["image"]) and torch.equal(item["mask"], first[i]["mask"])
    # without a cache every access recomputes, so the patched function is hit
    with pytest.raises(AssertionError, match="cached"):
        SegmentationDataset(samples, CFG, cache_dir=None)[0]


def test_cache_key_tracks_config_and_file(phantoms, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(phantoms, root)
    samples = discover_dataset(root, require_masks=True)
    a = SegmentationDataset(samples, CFG, cache_dir=tmp_path / "c")
    assert a.cache_key(0) == SegmentationDataset(samples, PreprocessConfig(size=(32, 32), roi="none"), cache_dir=tmp_path / "c").cache_key(0)
    cfg2 = CFG.model_copy(update={"normalize": "zscore"})
    b = SegmentationDataset(samples, cfg2, cache_dir=tmp_path / "c")
    assert a.cache_key(0) != b.cache_key(0)
    assert a.cache_key(0) != a.cache_key(1)
    # the changed config really gives other pixels (so a shared key would have been stale)
    assert not torch.equal(a[0]["image"], b[0]["image"])
    key = a.cache_key(2)
    st = samples[2].image_path.stat()
    os.utime(samples[2].image_path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert a.cache_key(2) != key


def test_preload_fills_cache_once(phantoms, tmp_path):
    samples = discover_dataset(phantoms, require_masks=True)
    ds = SegmentationDataset(samples, CFG, cache_dir=tmp_path / "c")
    assert ds.preload(show_progress=False) == 6
    assert ds.preload(show_progress=False) == 0
    assert sorted(p.stem for p in (tmp_path / "c").glob("*.npz")) == sorted(ds.cache_key(i) for i in range(6))


def _multiclass_dataset(root: Path) -> list[Sample]:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    out = []
    for i in range(2):
        img = rng.integers(0, 256, (48, 64), dtype=np.uint8)
        lab = np.zeros((48, 64), np.uint8)
        lab[4:20, 4:30] = 1
        lab[24:44, 30 + i : 60] = 2
        cv2.imwrite(str(root / "images" / f"m{i}.png"), img)
        cv2.imwrite(str(root / "masks" / f"m{i}.png"), lab)
        out.append(Sample(f"m{i}", root / "images" / f"m{i}.png", root / "masks" / f"m{i}.png"))
    return out


def test_multiclass_label_maps(tmp_path):
    samples = _multiclass_dataset(tmp_path / "mc")
    ds = SegmentationDataset(samples, CFG, cache_dir=tmp_path / "c", classes=3)
    item = ds[1]
    assert item["mask"].dtype == torch.int64 and item["mask"].shape == (32, 32)
    _, expected = _expected(samples[1], CFG)
    np.testing.assert_array_equal(item["mask"].numpy(), expected)
    assert set(np.unique(item["mask"].numpy())) == {0, 1, 2}
    # binary view of the same maps: any label is foreground
    bin_item = SegmentationDataset(samples, CFG, cache_dir=tmp_path / "c", classes=1)[1]
    np.testing.assert_array_equal(bin_item["mask"][0].numpy(), (expected > 0).astype(np.float32))
    with pytest.raises(InputError, match="label 2"):
        SegmentationDataset(samples, CFG, classes=2)[0]


def test_augment_applied_after_cache(phantoms, tmp_path):
    samples = discover_dataset(phantoms, require_masks=True)
    seen = []

    def flip(image, mask):
        seen.append((image.dtype, mask.dtype, set(np.unique(mask).tolist())))
        return image[:, ::-1], mask[:, ::-1]

    plain = SegmentationDataset(samples, CFG, cache_dir=tmp_path / "c")[2]
    aug = SegmentationDataset(samples, CFG, augment=flip, cache_dir=tmp_path / "c")[2]
    assert torch.equal(aug["image"], plain["image"].flip(-1)) and torch.equal(aug["mask"], plain["mask"].flip(-1))
    assert seen == [(np.float32, np.uint8, {0, 1})]


def test_with_project_augmentation_and_seeded_loader(phantoms, tmp_path):
    from sonoseg.config import AugmentConfig
    from sonoseg.data.augment import build_augmentation

    samples = discover_dataset(phantoms, require_masks=True)
    ds = SegmentationDataset(samples, CFG, augment=build_augmentation(AugmentConfig(), seed=0), cache_dir=tmp_path / "c")
    ds.preload(show_progress=False)

    def order(seed):
        return [int(i) for b in make_loader(ds, batch_size=4, shuffle=True, seed=seed) for i in b["index"]]

    assert order(3) == order(3)
    assert sorted(order(3)) == list(range(6)) and order(3) != order(4)
    batch = next(iter(make_loader(ds, batch_size=4, shuffle=False)))
    assert batch["image"].shape == (4, 1, 32, 32) and batch["mask"].shape == (4, 1, 32, 32)
    assert set(torch.unique(batch["mask"]).tolist()) <= {0.0, 1.0}
    assert batch["stem"] == [s.stem for s in samples[:4]]


def test_workers_reseed_augmentation(phantoms, tmp_path):
    """Two workers must not replay the same augmentation stream; the same loader seed repeats it."""
    from sonoseg.config import AugmentConfig
    from sonoseg.data.augment import build_augmentation

    samples = discover_dataset(phantoms, require_masks=True)[:1] * 4
    samples = [Sample(f"s{i}", s.image_path, s.mask_path) for i, s in enumerate(samples)]  # 4 x the same image
    cfg = AugmentConfig(hflip=0.0, rotate_limit=30.0, affine_p=1.0, brightness_contrast_p=0.0)
    ds = SegmentationDataset(samples, CFG, augment=build_augmentation(cfg, seed=0), cache_dir=tmp_path / "c")
    ds.preload(show_progress=False)

    def run(seed):
        loader = make_loader(ds, batch_size=1, shuffle=False, num_workers=2, seed=seed)
        return [b["image"] for b in loader]

    a, b = run(5), run(5)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], a[1])  # index 0 -> worker 0, index 1 -> worker 1: same input, other draw


def test_missing_mask_rejected(tmp_path):
    with pytest.raises(InputError, match="no mask"):
        SegmentationDataset([Sample("a", tmp_path / "a.png", None)], CFG)


def test_dicom_image_with_nifti_mask(tmp_path):
    from conftest import dicom_testfile
    from sonoseg.io import write_nifti

    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    shutil.copy(dicom_testfile("US1_J2KR.dcm"), root / "images" / "us1")
    lab = np.zeros((480, 640), np.uint8)
    lab[100:200, 300:500] = 1
    write_nifti(lab, root / "masks" / "us1.nii.gz")
    samples = discover_dataset(root, require_masks=True)
    item = SegmentationDataset(samples, CFG, cache_dir=tmp_path / "c")[0]
    li = load_image(samples[0].image_path)
    pre = preprocess_image(li.pixels, CFG, meta=li.meta)
    np.testing.assert_array_equal(item["mask"][0].numpy(), preprocess_mask(lab, pre.transform).astype(np.float32))
    assert 0 < item["mask"].sum() < 32 * 32
