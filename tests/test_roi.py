"""Ultrasound region of interest (seed 004 §3.3): DICOM US regions, image analysis, safe fallbacks."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import dicom_testfile
from sonoseg.data.phantom import make_phantom
from sonoseg.io.types import ImageMeta, UltrasoundRegion
from sonoseg.preprocess import PreprocessConfig, find_roi, preprocess_image, roi_from_image, roi_from_us_regions


def meta_with(*regions: UltrasoundRegion) -> ImageMeta:
    return ImageMeta(path="synthetic.dcm", format="dicom", us_regions=list(regions))


# ---------------- DICOM regions ----------------
def test_largest_tissue_region_wins_and_max_coordinates_are_inclusive():
    img = np.zeros((300, 400), np.uint8)
    small_tissue = UltrasoundRegion(x0=10, y0=10, x1=109, y1=99, spatial_format=1, data_type=1)
    big_tissue = UltrasoundRegion(x0=120, y0=20, x1=379, y1=249, spatial_format=1, data_type=1)
    doppler = UltrasoundRegion(x0=0, y0=0, x1=399, y1=299, spatial_format=3, data_type=3)  # larger, not tissue
    meta = meta_with(small_tissue, doppler, big_tissue)
    assert find_roi(img, meta, "dicom") == (20, 120, 250, 380)
    assert find_roi(img, meta, "auto") == (20, 120, 250, 380)
    assert find_roi(img, meta, "none") == (0, 0, 300, 400)


def test_region_with_unknown_type_is_used_and_bad_ones_are_not():
    shape = (200, 300)
    unknown = UltrasoundRegion(x0=50, y0=40, x1=249, y1=179)
    assert roi_from_us_regions([unknown], shape) == (40, 50, 180, 250)
    off_by_one = UltrasoundRegion(x0=0, y0=0, x1=300, y1=200)  # writers that store exclusive ends
    assert roi_from_us_regions([off_by_one], shape) == (0, 0, 200, 300)
    stale = UltrasoundRegion(x0=84, y0=31, x1=595, y1=414, spatial_format=1, data_type=1)  # image was resized
    assert roi_from_us_regions([stale], shape) is None
    tiny = UltrasoundRegion(x0=5, y0=5, x1=8, y1=8)
    assert roi_from_us_regions([tiny], shape) is None
    spectral = UltrasoundRegion(x0=0, y0=100, x1=299, y1=199, spatial_format=3, data_type=3)
    assert roi_from_us_regions([spectral], shape) is None


def test_dicom_mode_without_regions_is_full_image_and_auto_falls_back_to_image():
    ph = make_phantom((128, 160), sector=True, ui_overlay=True, seed=1)
    assert find_roi(ph.image, meta_with(), "dicom") == (0, 0, 128, 160)
    assert find_roi(ph.image, None, "dicom") == (0, 0, 128, 160)
    assert find_roi(ph.image, meta_with(), "auto") == roi_from_image(ph.image) != (0, 0, 128, 160)


def test_pipeline_crops_to_region_and_inverse_zeroes_outside():
    ph = make_phantom((160, 200), sector=True, ui_overlay=True, seed=4)
    y0, x0, y1, x1 = ph.imaging_box
    meta = meta_with(UltrasoundRegion(x0=x0, y0=y0, x1=x1 - 1, y1=y1 - 1, spatial_format=1, data_type=1))
    pre = preprocess_image(ph.image, PreprocessConfig(roi="dicom", size=(64, 64)), meta)
    assert pre.roi == ph.imaging_box
    back = pre.transform.to_original(np.ones((64, 64), np.uint8))
    assert back[y0:y1, x0:x1].all() and back.sum() == (y1 - y0) * (x1 - x0)
    assert not (back.astype(bool) & ph.ui_mask).any()


# ---------------- image analysis on phantoms ----------------
@pytest.mark.parametrize("size", [(128, 128), (256, 256), (200, 300), (300, 200)])
@pytest.mark.parametrize("sector", [False, True])
def test_auto_roi_drops_ui_and_keeps_all_tissue(size, sector):
    tol = math.ceil(0.05 * min(size))
    for seed in range(3):
        ph = make_phantom(size, n_lesions=2, sector=sector, ui_overlay=True, seed=seed)
        y0, x0, y1, x1 = find_roi(ph.image, None, "auto")
        box = np.zeros(size, bool)
        box[y0:y1, x0:x1] = True
        assert ph.ui_mask.any() and not (ph.ui_mask & box).any(), "UI text/bars left inside the ROI"
        assert not (ph.mask.astype(bool) & ~box).any(), "ROI cuts through a lesion"
        assert not (ph.sector_mask & ~box).any(), "ROI cuts imaging area"
        iy0, ix0, iy1, ix1 = ph.imaging_box
        assert y0 >= iy0 - tol and x0 >= ix0 - tol and y1 <= iy1 + tol and x1 <= ix1 + tol


def test_auto_roi_on_full_frame_image_is_full_frame():
    ph = make_phantom((160, 192), n_lesions=2, sector=False, ui_overlay=False, seed=3)
    assert find_roi(ph.image, None, "auto") == (0, 0, 160, 192)


def test_auto_roi_sector_without_ui_crops_only_black_rows():
    ph = make_phantom((256, 256), sector=True, seed=2)
    y0, x0, y1, x1 = find_roi(ph.image, None, "auto")
    iy0, ix0, iy1, ix1 = ph.imaging_box
    assert y1 < 256 and (y0, x0, x1) == (0, 0, 256)  # the black band below the fan goes
    assert iy1 <= y1 <= iy1 + 8
    assert not ph.image[y1:].any()


def test_auto_roi_works_on_colour_and_16_bit_input():
    ph = make_phantom((200, 240), sector=True, ui_overlay=True, seed=5)
    ref = find_roi(ph.image, None, "auto")
    rgb = np.dstack([ph.image] * 3)
    assert find_roi(rgb, None, "auto") == ref
    assert find_roi(ph.image.astype(np.uint16) * 257, None, "auto") == ref


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((120, 160), np.uint8),  # black frame
        np.full((120, 160), 200, np.uint8),  # flat, nothing to crop
        np.random.default_rng(0).integers(0, 256, (120, 160)).astype(np.uint8),  # noise everywhere
    ],
    ids=["black", "flat", "noise"],
)
def test_nothing_sensible_gives_full_image(image):
    assert find_roi(image, None, "auto") == (0, 0, 120, 160)


def test_small_object_or_text_only_gives_full_image():
    img = np.zeros((200, 200), np.uint8)
    img[90:110, 90:110] = 180  # 1 % of the frame: not an imaging area
    assert roi_from_image(img) is None and find_roi(img, None, "auto") == (0, 0, 200, 200)
    txt = np.zeros((200, 200), np.uint8)
    for i in range(8):
        cv2.putText(txt, "PATIENT 123 TIS 0.4", (5, 20 + 22 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 255, 1)
    assert find_roi(txt, None, "auto") == (0, 0, 200, 200)


def test_cyst_across_the_width_keeps_both_tissue_halves():
    """An anechoic cyst spanning the whole width splits the tissue in two: both halves stay."""
    rng = np.random.default_rng(3)
    img = (rng.rayleigh(40, (240, 300))).clip(0, 255).astype(np.uint8)
    img[80:170] = 0  # cyst (black) across the full width
    assert find_roi(img, None, "auto") == (0, 0, 240, 300)


# ---------------- real DICOM ----------------
def _load(name: str):
    path = dicom_testfile(name)
    io = pytest.importorskip("sonoseg.io")
    if not hasattr(io, "load_image"):
        pytest.skip("sonoseg.io.load_image not available")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = io.load_image(path)
    px = loaded.pixels[0] if loaded.meta.frames > 1 else loaded.pixels
    return px, loaded.meta


def test_real_echo_dicom_region_and_image_analysis_agree():
    px, meta = _load("JPGLosslessP14SV1_1s_1f_8b.dcm")  # cardiac sector, UI text all around
    region = find_roi(px, meta, "dicom")
    assert region == (38, 14, 759, 1011)
    y0, x0, y1, x1 = roi_from_image(px)
    # the sector found from pixels lies inside the scanner's region and is clearly smaller
    assert region[0] <= y0 and region[1] <= x0 and y1 <= region[2] and x1 <= region[3]
    assert (y1 - y0) * (x1 - x0) < 0.8 * (region[2] - region[0]) * (region[3] - region[1])
    pre = preprocess_image(px, PreprocessConfig(roi="dicom", size=(128, 128)), meta)
    assert pre.roi == region and pre.image.shape == (128, 128)


def test_real_dicom_with_stale_region_is_not_cropped_by_header():
    px, meta = _load("examples_ybr_color.dcm")  # 240x320 frames, region written for 480x640
    assert meta.us_regions, "fixture should carry a US region"
    assert find_roi(px, meta, "dicom") == (0, 0, px.shape[0], px.shape[1])


def test_real_dicom_without_regions_drops_bottom_ui():
    px, meta = _load("US1_UNCR.dcm")  # linear probe + power Doppler, no US regions, UI text below
    assert not meta.us_regions
    y0, x0, y1, x1 = find_roi(px, meta, "auto")
    assert (x0, x1) == (0, px.shape[1])  # tissue spans the full width
    assert y0 <= 70 and 330 <= y1 <= 360  # "LYMPH NODE", scale bar and TIS/MI line (rows > 360) go
    assert find_roi(px, meta, "dicom") == (0, 0, 480, 640)


# ---------------- BUSI ----------------
@pytest.mark.busi
def test_auto_roi_never_cuts_busi_lesions(busi: Path):
    images = sorted((busi / "images").glob("*.png"))[::3]
    assert len(images) > 100
    fractions = []
    for p in images:
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        mask = cv2.imread(str(busi / "masks" / p.name), cv2.IMREAD_GRAYSCALE) > 0
        y0, x0, y1, x1 = find_roi(img, None, "auto")
        assert mask[y0:y1, x0:x1].sum() == mask.sum(), f"{p.name}: ROI {(y0, x0, y1, x1)} cuts the lesion"
        fractions.append((y1 - y0) * (x1 - x0) / mask.size)
    # BUSI frames are already cropped scans: the ROI keeps (nearly) all of them
    assert np.median(fractions) == 1.0 and min(fractions) > 0.5
