"""Report files, gallery selection, and the overlay helpers (pixel values checked by hand)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from sonoseg.evaluate import (
    GalleryItem,
    contour_overlay,
    error_map,
    evaluate_pairs,
    overlay_image,
    select_gallery_stems,
    to_rgb_uint8,
    write_report,
)
from sonoseg.outputs.overlay import FN_COLOR, FP_COLOR, TP_COLOR

SIZE = 64


def _items():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    gt = ((yy - 32) ** 2 / 14**2 + (xx - 30) ** 2 / 18**2) <= 1
    out = []
    for i, shift in enumerate((0, 2, 5, 9, 14)):  # Dice decreases with the shift
        pred = np.roll(gt, shift, axis=1)
        img = np.clip(0.25 + 0.4 * gt + 0.1 * rng.standard_normal((SIZE, SIZE)), 0, 1).astype(np.float32)
        out.append(GalleryItem(f"case{i}", img, gt.astype(np.uint8), pred.astype(np.uint8)))
    z = np.zeros((SIZE, SIZE), np.uint8)
    out.append(GalleryItem("normal", (rng.random((SIZE, SIZE)) * 255).astype(np.uint8), z, z))
    return out


def _result(items):
    return evaluate_pairs(((g.stem, g.pred, g.gt, (0.3, 0.3)) for g in items), n_boot=100)


def test_gallery_selection_best_median_worst():
    items = _items()
    res = _result(items)
    assert select_gallery_stems(res) == {"best": "case0", "median": "case2", "worst": "case4"}
    assert select_gallery_stems(res, ["case1", "case3", "normal"]) == {
        "best": "case1",
        "median": "case1",
        "worst": "case3",
    }


def test_write_report_files_and_links(tmp_path):
    items = _items()
    res = _result(items)
    paths = write_report(res, tmp_path / "rep", gallery=items)
    out = tmp_path / "rep"
    for name in ("report.md", "report.html", "dice_hist.png"):
        assert (out / name).is_file()
    html = (out / "report.html").read_text()
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert "dice_hist.png" in srcs and len(srcs) == 4
    for s in srcs:
        with Image.open(out / s) as im:  # exists and is a real PNG
            assert im.format == "PNG" and im.size[0] > 200
    md = (out / "report.md").read_text()
    for s in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (out / s).is_file()
    # the table shows the aggregate numbers, n, units and the empty-case counts
    d = res.aggregate["dice"]
    assert f"{d['mean']:.3f} ± {d['std']:.3f}" in md and f"[{d['ci95'][0]:.3f}, {d['ci95'][1]:.3f}]" in md
    assert f"HD95 (mm) | {res.aggregate['hd95']['mean']:.2f}" in md
    assert "| Empty ground truth (excluded from overlap / distance) | 1 |" in md
    assert "case0" in html and "case4" in html and "<table>" in html
    assert paths["gallery_worst"].name == "worst_case4.png"


def test_report_gallery_callable_loads_only_three(tmp_path):
    items = {g.stem: g for g in _items()}
    res = _result(list(items.values()))
    asked = []

    def load(stem):
        asked.append(stem)
        return items[stem]

    write_report(res, tmp_path, gallery=load)
    assert sorted(asked) == ["case0", "case2", "case4"]


def test_report_without_gallery_or_scored_images(tmp_path):
    z = np.zeros((16, 16), np.uint8)
    res = evaluate_pairs([("n1", z, z, None), ("n2", z, z, None)], n_boot=10)
    write_report(res, tmp_path, gallery=[GalleryItem("n1", z.astype(float), z, z)])
    html = (tmp_path / "report.html").read_text()
    assert re.findall(r'<img src="([^"]+)"', html) == ["dice_hist.png"]
    assert "n/a" in (tmp_path / "report.md").read_text()


def test_multiclass_report_has_class_tables(tmp_path):
    g = np.zeros((32, 32), np.uint8)
    g[4:12, 4:12] = 1
    g[18:28, 18:28] = 2
    p = np.roll(g, 2, axis=0)
    res = evaluate_pairs([("m", p, g, None)], classes=3, n_boot=10)
    write_report(res, tmp_path, gallery=[GalleryItem("m", np.linspace(0, 1, 32 * 32).reshape(32, 32), g, p)])
    md = (tmp_path / "report.md").read_text()
    assert "## Class 1" in md and "## Class 2" in md and "HD95 (px)" in md
    assert (tmp_path / "gallery" / "best_m.png").is_file()


# ------------------------------------------------------------------ overlay helpers


def test_to_rgb_uint8_scaling():
    assert np.array_equal(to_rgb_uint8(np.array([[0.0, 1.0]]))[0, :, 0], [0, 255])
    assert np.array_equal(to_rgb_uint8(np.array([[10.0, 20.0, 30.0]]))[0, :, 1], [0, 128, 255])
    u = np.array([[3, 200]], np.uint8)
    assert np.array_equal(to_rgb_uint8(u[None])[..., 2], u)  # (1, H, W) channel-first accepted
    assert to_rgb_uint8(np.zeros((4, 5))).shape == (4, 5, 3)


def test_overlay_image_blends_only_mask_pixels():
    img = np.full((4, 4), 100, np.uint8)
    mask = np.zeros((4, 4), bool)
    mask[1, 2] = True
    out = overlay_image(img, mask, color=(200, 0, 50), alpha=0.25)
    assert tuple(out[1, 2]) == (125, 75, 88)  # 0.75 * 100 + 0.25 * c, rounded
    assert (out[~mask] == 100).all()


def test_overlay_label_map_palette():
    img = np.zeros((3, 3), np.uint8)
    lab = np.array([[0, 1, 2], [0, 0, 0], [0, 0, 0]])
    out = overlay_image(img, lab, color=None, alpha=1.0)
    assert not np.array_equal(out[0, 1], out[0, 2]) and (out[0, 1] > 0).any() and (out[0, 2] > 0).any()


def test_contour_overlay_draws_boundary_only():
    img = np.zeros((12, 12), np.uint8)
    m = np.zeros((12, 12), np.uint8)
    m[3:9, 3:9] = 1
    out = contour_overlay(img, m, color=(255, 0, 0))
    drawn = out[..., 0] == 255
    exp = np.zeros((12, 12), bool)
    exp[3:9, 3:9] = True
    exp[4:8, 4:8] = False
    assert np.array_equal(drawn, exp)


def test_error_map_colours():
    img = np.zeros((1, 4), np.uint8)
    gt = np.array([[1, 1, 0, 0]])
    pred = np.array([[1, 0, 1, 0]])
    out = error_map(img, gt, pred, alpha=1.0)
    assert tuple(out[0, 0]) == TP_COLOR and tuple(out[0, 2]) == FP_COLOR
    assert tuple(out[0, 1]) == FN_COLOR and tuple(out[0, 3]) == (0, 0, 0)


def test_overlay_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        overlay_image(np.zeros((4, 4)), np.zeros((4, 5), bool))
