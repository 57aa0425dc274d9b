"""Synthetic phantom: determinism, speckle statistics, lesion masks/contrast, dataset writer, CLI."""

from __future__ import annotations

import csv
from collections import defaultdict

import cv2
import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from sonoseg.data.phantom import Lesion, make_phantom, write_phantom_dataset

RAYLEIGH_CV = float(np.sqrt(4 / np.pi - 1))  # std/mean of any Rayleigh distribution (0.523)


def test_deterministic_for_a_seed_and_different_across_seeds():
    a = make_phantom((96, 128), n_lesions=2, sector=True, ui_overlay=True, seed=11)
    b = make_phantom((96, 128), n_lesions=2, sector=True, ui_overlay=True, seed=11)
    c = make_phantom((96, 128), n_lesions=2, sector=True, ui_overlay=True, seed=12)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask) and a.lesions == b.lesions
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("sector", [False, True])
def test_types_shapes_and_mask_is_union_of_ellipses(sector):
    ph = make_phantom((120, 150), n_lesions=3, sector=sector, seed=5)
    assert ph.image.shape == ph.mask.shape == ph.sector_mask.shape == (120, 150)
    assert ph.image.dtype == np.uint8 and ph.mask.dtype == np.uint8 and ph.sector_mask.dtype == bool
    assert set(np.unique(ph.mask)) <= {0, 1}
    assert 1 <= len(ph.lesions) <= 3 and all(isinstance(les, Lesion) for les in ph.lesions)
    union = np.zeros(ph.mask.shape, bool)
    for les in ph.lesions:
        # independent rasterisation of the same ellipse with OpenCV (sub-pixel, 1 px tolerance)
        m = np.zeros(ph.mask.shape, np.uint8)
        cv2.ellipse(m, (round(les.cx - 0.5), round(les.cy - 0.5)), (round(les.a), round(les.b)), les.angle_deg, 0, 360, 1, -1)
        ours = les.mask(ph.mask.shape)
        assert (m.astype(bool) ^ ours).sum() < 0.15 * ours.sum() + 10
        union |= ours
    assert np.array_equal(union, ph.mask.astype(bool))
    assert not (ph.mask.astype(bool) & ~ph.sector_mask).any()  # lesions inside the imaging area


def test_sector_is_black_outside_and_ui_stays_outside():
    ph = make_phantom((160, 200), sector=True, ui_overlay=True, seed=2)
    outside = ~ph.sector_mask & ~ph.ui_mask
    assert not ph.image[outside].any()
    assert ph.ui_mask.sum() > 200 and not (ph.ui_mask & ph.sector_mask).any()
    rows, cols = np.flatnonzero(ph.sector_mask.any(1)), np.flatnonzero(ph.sector_mask.any(0))
    assert ph.imaging_box == (rows[0], cols[0], rows[-1] + 1, cols[-1] + 1)
    assert ph.sector_mask[ph.sector_mask.shape[0] // 2, 0] == False  # noqa: E712  (fan, not rectangle)
    plain = make_phantom((160, 200), sector=False, ui_overlay=False, seed=2)
    assert plain.sector_mask.all() and plain.ui_mask is None


def test_speckle_is_rayleigh():
    """image(speckle) / image(no speckle) isolates the speckle envelope: Rayleigh shape."""
    a = make_phantom((256, 256), n_lesions=0, seed=3, speckle=True)
    b = make_phantom((256, 256), n_lesions=0, seed=3, speckle=False)
    ok = (b.image > 40) & (a.image < 255)  # away from quantisation and clipping
    r = a.image[ok] / b.image[ok]
    r = r / r.mean()
    assert r.std() == pytest.approx(RAYLEIGH_CV, abs=0.04)
    q = np.quantile(r, [0.1, 0.5, 0.9])
    ref = stats.rayleigh.ppf([0.1, 0.5, 0.9], scale=1 / np.sqrt(np.pi / 2))  # unit-mean Rayleigh
    assert np.allclose(q, ref, atol=0.06)


def test_depth_attenuation():
    ph = make_phantom((240, 240), n_lesions=0, seed=8)
    img = ph.image.astype(float)
    top, bottom = img[20:80].mean(), img[-60:].mean()
    assert 0.35 < bottom / top < 0.75  # exp(-0.7) ~ 0.5 across the depth


def test_lesions_are_clearly_hypoechoic():
    for seed in range(6):
        ph = make_phantom((160, 160), n_lesions=1, seed=seed)
        m = ph.mask.astype(np.uint8)
        ring = (cv2.dilate(m, np.ones((15, 15), np.uint8)) > 0) & ~(cv2.dilate(m, np.ones((5, 5), np.uint8)) > 0)
        smooth = cv2.GaussianBlur(ph.image.astype(np.float32), (0, 0), 2.0)
        inside, around = smooth[m > 0], smooth[ring & ph.sector_mask]
        assert inside.mean() < 0.6 * around.mean()
        cnr = (around.mean() - inside.mean()) / np.sqrt(0.5 * (inside.var() + around.var()))
        assert cnr > 1.5, seed


def test_posterior_shadow_darkens_below_lesion():
    ph = next(p for s in range(50) if (p := make_phantom((200, 200), seed=s, lesion_kind="malignant")).lesions[0].posterior == "shadow")
    m = ph.mask.astype(bool)
    cols = np.flatnonzero(m.any(0))
    below_row = np.flatnonzero(m.any(1))[-1] + 8
    img = cv2.GaussianBlur(ph.image.astype(np.float32), (0, 0), 2.0)
    behind = img[below_row : below_row + 30, cols[2] : cols[-2]].mean()
    side = np.r_[max(cols[0] - 40, 0) : max(cols[0] - 10, 1), min(cols[-1] + 10, 199) : min(cols[-1] + 40, 200)]
    beside = img[below_row : below_row + 30][:, side].mean()
    assert behind < 0.8 * beside


def test_lesion_kind_shapes():
    benign = [make_phantom((128, 128), seed=s, lesion_kind="benign").lesions[0] for s in range(5)]
    malignant = [make_phantom((128, 128), seed=s, lesion_kind="malignant").lesions[0] for s in range(5)]
    assert all(les.posterior in ("none", "enhancement") for les in benign)
    assert all(les.posterior in ("none", "shadow") for les in malignant)
    # benign: long axis roughly horizontal; malignant: taller than wide
    assert all(abs(np.cos(np.radians(les.angle_deg))) > 0.9 for les in benign)
    assert all(abs(np.sin(np.radians(les.angle_deg))) > 0.9 for les in malignant)


def test_write_dataset_layout(tmp_path):
    root = write_phantom_dataset(tmp_path / "ds", n=7, size=(64, 80), seed=3)
    with open(root / "labels.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["image", "class", "group"] and len(rows) == 7
    groups = defaultdict(list)
    for r in rows:
        groups[r["group"]].append(r)
        img = cv2.imread(str(root / "images" / r["image"]), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(root / "masks" / r["image"]), cv2.IMREAD_UNCHANGED)
        assert img.shape == mask.shape == (64, 80) and img.dtype == np.uint8
        assert set(np.unique(mask)) == {0, 255}
        assert img[mask > 0].mean() < img[mask == 0].mean()
    assert [len(v) for v in groups.values()] == [2, 2, 2, 1]
    assert all(len({r["class"] for r in v}) == 1 for v in groups.values())  # a patient has one class
    assert {r["class"] for r in rows} == {"benign", "malignant"}
    again = write_phantom_dataset(tmp_path / "ds2", n=7, size=(64, 80), seed=3)
    assert (again / "images" / "phantom_0004.png").read_bytes() == (root / "images" / "phantom_0004.png").read_bytes()


def test_write_dicom_dataset(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    root = write_phantom_dataset(tmp_path / "dcm", n=2, size=(96, 128), seed=1, dicom=True, sector=True, ui_overlay=True)
    with open(root / "labels.csv") as fh:
        rows = list(csv.DictReader(fh))
    ds = pydicom.dcmread(root / "images" / rows[0]["image"])
    assert ds.Modality == "US" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.6.1"
    ph = make_phantom((96, 128), 1, True, True, seed=1 * 1_000_003 + 0, lesion_kind="benign")
    assert np.array_equal(ds.pixel_array, ph.image)
    reg = ds.SequenceOfUltrasoundRegions[0]
    y0, x0, y1, x1 = ph.imaging_box
    assert (reg.RegionLocationMinX0, reg.RegionLocationMinY0, reg.RegionLocationMaxX1, reg.RegionLocationMaxY1) == (x0, y0, x1 - 1, y1 - 1)
    mask = cv2.imread(str(root / "masks" / "phantom_0000.png"), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(mask > 0, ph.mask > 0)
    io = pytest.importorskip("sonoseg.io")
    if hasattr(io, "load_image"):  # the project's reader sees the region -> ROI from the header
        from sonoseg.preprocess import find_roi

        loaded = io.load_image(root / "images" / rows[0]["image"])
        assert find_roi(loaded.pixels, loaded.meta, "dicom") == ph.imaging_box


def test_cli_phantom(tmp_path):
    from sonoseg.cli.main import app

    out = tmp_path / "ph"
    res = CliRunner().invoke(app, ["phantom", str(out), "--n", "4", "--size", "64", "--seed", "2", "--sector", "--ui"])
    assert res.exit_code == 0, res.output
    assert len(list((out / "images").glob("*.png"))) == 4 and (out / "labels.csv").is_file()
    img = cv2.imread(str(out / "images" / "phantom_0001.png"), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(img, make_phantom((64, 64), 1, True, True, seed=2 * 1_000_003 + 1, lesion_kind="benign").image)
    bad = CliRunner().invoke(app, ["phantom", str(out), "--size", "12"])
    assert bad.exit_code != 0


@pytest.mark.slow
def test_tiny_unet_learns_phantom_lesions():
    """The lesions are learnable: a ~30k-parameter U-Net reaches Dice > 0.6 on unseen phantoms
    after a few dozen optimiser steps on 24 images (CPU, one thread, ~10 s)."""
    torch = pytest.importorskip("torch")
    from torch import nn

    from sonoseg.preprocess import PreprocessConfig, preprocess_image, preprocess_mask

    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = PreprocessConfig(size=(64, 64))

    def data(seeds):
        xs, ys = [], []
        for s in seeds:
            ph = make_phantom((128, 128), n_lesions=1, seed=s)
            pre = preprocess_image(ph.image, cfg)
            xs.append(pre.image)
            ys.append(preprocess_mask(ph.mask, pre.transform))
        return torch.tensor(np.stack(xs))[:, None], torch.tensor(np.stack(ys))[:, None].float()

    def block(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.Conv2d(o, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU())

    class TinyUNet(nn.Module):
        def __init__(self, c=8):
            super().__init__()
            self.e1, self.e2, self.e3 = block(1, c), block(c, 2 * c), block(2 * c, 4 * c)
            self.pool = nn.MaxPool2d(2)
            self.u2, self.d2 = nn.ConvTranspose2d(4 * c, 2 * c, 2, 2), block(4 * c, 2 * c)
            self.u1, self.d1 = nn.ConvTranspose2d(2 * c, c, 2, 2), block(2 * c, c)
            self.out = nn.Conv2d(c, 1, 1)

        def forward(self, x):
            a = self.e1(x)
            b = self.e2(self.pool(a))
            c = self.e3(self.pool(b))
            d = self.d2(torch.cat([self.u2(c), b], 1))
            return self.out(self.d1(torch.cat([self.u1(d), a], 1)))

    xtr, ytr = data(range(24))
    xte, yte = data(range(1000, 1008))
    model = TinyUNet()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(32):
        model.train()
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), 8):
            idx = perm[i : i + 8]
            logits = model(xtr[idx])
            prob = torch.sigmoid(logits)
            dice_loss = 1 - (2 * (prob * ytr[idx]).sum() + 1) / (prob.sum() + ytr[idx].sum() + 1)
            loss = nn.functional.binary_cross_entropy_with_logits(logits, ytr[idx]) + dice_loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        pred = (model(xte) > 0).float()
    dice = float(2 * (pred * yte).sum() / (pred.sum() + yte.sum()))
    assert dice > 0.6
