"""Measurements against shapes whose true geometry is known (drawn in physical space)."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
from scipy.special import ellipe

from sonoseg.infer.measure import measure_mask, measurements_summary, ramanujan_circumference


def exact_circumference(a: float, b: float) -> float:
    """Independent reference: 4a·E(e²) via the complete elliptic integral of the second kind."""
    a, b = max(a, b), min(a, b)
    return 4.0 * a * ellipe(1.0 - (b / a) ** 2)


def ellipse_phys(A, B, angle_deg, cx, cy, spacing, shape):
    """Mask of pixel centres inside an ellipse defined in mm (semi-axes A, B; angle of A from +x)."""
    r, c = np.mgrid[: shape[0], : shape[1]].astype(float)
    y, x = r * spacing[0] - cy, c * spacing[1] - cx
    t = math.radians(angle_deg)
    u = x * math.cos(t) + y * math.sin(t)
    v = -x * math.sin(t) + y * math.cos(t)
    return ((u / A) ** 2 + (v / B) ** 2 <= 1.0).astype(np.uint8)


def rel(x, ref):
    return abs(x / ref - 1.0)


def test_ramanujan_matches_elliptic_integral():
    for a, b in [(15, 9), (10, 10), (20, 3), (5, 0.5)]:
        assert rel(ramanujan_circumference(a, b), exact_circumference(a, b)) < 2e-5
    assert rel(ramanujan_circumference(15, 9), exact_circumference(15, 9)) < 1e-9
    assert ramanujan_circumference(10, 10) == pytest.approx(2 * math.pi * 10)


@pytest.mark.parametrize("spacing", [(0.1, 0.1), (0.2, 0.1)])
def test_cv2_ellipse_drawn_in_physical_space(spacing):
    A, B = 15.0, 9.0  # mm semi-axes, major along the columns (x)
    sr, sc = spacing
    axes_px = (int(round(A / sc)), int(round(B / sr)))  # (x, y) semi-axes in pixels
    h, w = int(40 / sr), int(40 / sc)
    m = np.zeros((h, w), np.uint8)
    cv2.ellipse(m, (w // 2, h // 2), axes_px, 0, 0, 360, 1, -1)
    (e,) = measure_mask(m, spacing)
    assert e["unit"] == "mm" and e["label"] == 1 and e["component"] == 1
    true_c = ramanujan_circumference(A, B)
    assert rel(e["ellipse"]["circumference"], true_c) < 0.01
    assert rel(e["area"], math.pi * A * B) < 0.02
    assert rel(e["max_diameter"], 2 * A) < 0.01
    assert rel(e["perpendicular_diameter"], 2 * B) < 0.02
    assert rel(e["ellipse"]["major_axis"], 2 * A) < 0.01
    assert rel(e["ellipse"]["minor_axis"], 2 * B) < 0.02
    assert rel(e["perimeter"], true_c) < 0.02
    assert rel(e["equivalent_diameter"], 2 * math.sqrt(A * B)) < 0.01
    assert min(e["ellipse"]["orientation_deg"], 180 - e["ellipse"]["orientation_deg"]) < 1.0
    assert e["centroid"] == pytest.approx([h // 2, w // 2], abs=0.05)
    # endpoints: max_diameter apart in mm, centred on the ellipse, along the major axis (the flat ends
    # of a pixelated ellipse allow a slightly tilted longest chord)
    (r0, c0), (r1, c1) = e["max_diameter_endpoints"]
    assert math.hypot((r1 - r0) * sr, (c1 - c0) * sc) == pytest.approx(e["max_diameter"], rel=1e-3)
    assert [(r0 + r1) / 2, (c0 + c1) / 2] == pytest.approx([h // 2, w // 2], abs=1.0)
    tilt = math.degrees(math.atan2((r1 - r0) * sr, (c1 - c0) * sc)) % 180
    assert min(tilt, 180 - tilt) < 4.0


@pytest.mark.parametrize("spacing,angle", [((0.2, 0.1), 30.0), ((0.1, 0.25), 120.0), ((0.15, 0.15), 75.0)])
def test_rotated_ellipse_anisotropic(spacing, angle):
    """Rotated in mm: in pixel space this is a different (sheared) ellipse, so any computation done
    in pixels and scaled afterwards gets axes, orientation and circumference wrong."""
    A, B = 14.0, 8.0
    m = ellipse_phys(A, B, angle, 20.0, 20.0, spacing, (int(40 / spacing[0]), int(40 / spacing[1])))
    (e,) = measure_mask(m, spacing)
    ell = e["ellipse"]
    assert rel(ell["circumference"], exact_circumference(A, B)) < 0.005
    assert rel(e["area"], math.pi * A * B) < 0.01
    assert rel(ell["major_axis"], 2 * A) < 0.01 and rel(ell["minor_axis"], 2 * B) < 0.01
    d = abs(ell["orientation_deg"] - angle) % 180
    assert min(d, 180 - d) < 1.0
    assert rel(e["max_diameter"], 2 * A) < 0.01
    assert rel(e["perpendicular_diameter"], 2 * B) < 0.015
    assert rel(e["perimeter"], exact_circumference(A, B)) < 0.02
    # the perpendicular chord really is perpendicular to the long axis (in mm)
    (a0, a1), (b0, b1) = np.array(e["max_diameter_endpoints"]), np.array(e["perpendicular_diameter_endpoints"])
    va, vb = (a1 - a0) * spacing, (b1 - b0) * spacing
    assert abs(np.dot(va, vb)) / (np.linalg.norm(va) * np.linalg.norm(vb)) < 1e-3
    # centre in pixels = physical centre / spacing
    assert ell["center"] == pytest.approx([20.0 / spacing[0], 20.0 / spacing[1]], abs=0.2)


def test_rectangle_known_perimeter_and_diagonal():
    sp = (0.2, 0.1)
    m = np.zeros((160, 220), np.uint8)
    m[20:120, 30:180] = 1  # 100 rows × 150 cols -> 20 mm tall, 15 mm wide
    H, W = 20.0, 15.0
    (e,) = measure_mask(m, sp)
    assert e["area"] == pytest.approx(H * W)
    assert e["area_px"] == 15000
    assert e["bbox"] == [20, 30, 119, 179]
    assert e["bbox_height"] == pytest.approx(H) and e["bbox_width"] == pytest.approx(W)
    assert e["centroid"] == pytest.approx([69.5, 104.5])
    assert rel(e["perimeter"], 2 * (H + W)) < 0.01
    D = math.hypot(H, W)
    assert rel(e["max_diameter"], D) < 0.01
    # longest chord perpendicular to a diagonal: crosses the two long sides, length = short·D/long
    assert rel(e["perpendicular_diameter"], W * D / H) < 0.015
    ends = np.array(e["max_diameter_endpoints"])
    corners = {(19.5, 29.5), (119.5, 179.5), (19.5, 179.5), (119.5, 29.5)}
    for p in ends:  # endpoints sit at (opposite) corners, within the corner rounding
        assert min(math.hypot(p[0] - r, p[1] - c) for r, c in corners) < 1.0


def test_pixels_without_spacing_and_scaling_consistency():
    m = ellipse_phys(40, 25, 20, 60, 60, (1.0, 1.0), (120, 120))
    (px,) = measure_mask(m, None)
    (mm,) = measure_mask(m, (0.3, 0.3))
    assert px["unit"] == "px" and mm["unit"] == "mm"
    for k in ("max_diameter", "perpendicular_diameter", "perimeter", "equivalent_diameter"):
        assert mm[k] == pytest.approx(px[k] * 0.3, rel=1e-3)
    assert mm["area"] == pytest.approx(px["area"] * 0.09, rel=1e-6)
    assert mm["ellipse"]["circumference"] == pytest.approx(px["ellipse"]["circumference"] * 0.3, rel=1e-3)
    assert mm["centroid"] == px["centroid"]  # positions stay in pixels


def test_two_components_and_label_map():
    m = np.zeros((100, 100), np.uint8)
    m[10:20, 10:20] = 1  # 100 px
    m[50:80, 40:90] = 1  # 1500 px, larger -> component 1
    m[85:95, 5:10] = 2
    res = measure_mask(m, (0.5, 0.5), names={1: "lesion", 2: "cyst"})
    assert [(r["label"], r["component"], r["area_px"]) for r in res] == [(1, 1, 1500), (1, 2, 100), (2, 1, 50)]
    assert res[0]["name"] == "lesion" and res[2]["name"] == "cyst"
    assert res[1]["centroid"] == pytest.approx([14.5, 14.5])
    s = measurements_summary(res)
    assert s["count"] == 3 and s["unit"] == "mm"
    assert s["total_area"] == pytest.approx((1500 + 100 + 50) * 0.25)
    assert s["labels"]["1"]["count"] == 2 and s["labels"]["2"]["count"] == 1
    assert s["largest"]["area"] == pytest.approx(375.0) and s["largest"]["name"] == "lesion"
    # binary bool mask: diagonal-touching pixels are one structure (8-connectivity), or two with 4
    d = np.zeros((10, 10), bool)
    d[2, 2] = d[3, 3] = True
    assert len(measure_mask(d)) == 1
    assert len(measure_mask(d, connectivity=4)) == 2


def test_empty_tiny_and_json_safe():
    assert measure_mask(np.zeros((32, 32), np.uint8), (0.1, 0.1)) == []
    empty = measurements_summary([])
    assert empty["count"] == 0 and empty["largest"] is None
    m = np.zeros((20, 20), np.uint8)
    m[5, 5] = 1
    m[10:13, 10:12] = 1
    res = measure_mask(m, (0.1, 0.2))
    assert len(res) == 2
    single = res[1]
    assert single["area"] == pytest.approx(0.02) and single["ellipse"]["method"] == "moments"
    text = json.dumps({"s": res, "sum": measurements_summary(res)}, allow_nan=False)
    back = json.loads(text)
    assert back["s"][0]["area_px"] == 6
    assert measure_mask(m, (0.1, 0.2), min_area_px=2)[0]["area_px"] == 6
    assert len(measure_mask(m, (0.1, 0.2), min_area_px=2)) == 1


def test_bad_input():
    with pytest.raises(ValueError):
        measure_mask(np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(ValueError):
        measure_mask(np.full((4, 4), 0.7, np.float32))
    with pytest.raises(ValueError):
        measure_mask(np.ones((4, 4), np.uint8), (0.0, 0.1))
