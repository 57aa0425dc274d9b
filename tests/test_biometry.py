"""Biometry and contour conventions on drawn ellipses of known axes and spacing (independent truth:
the ellipse parameters the mask was drawn from, and Ramanujan's circumference of those axes)."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
from skimage.draw import ellipse as sk_ellipse

from sonoseg.infer.biometry import biometry, ellipse_fit_mask, largest
from sonoseg.infer.measure import measure_mask


def _circ(a, b):  # independent: numerical arc length of the ellipse x = a cos t, y = b sin t
    t = np.linspace(0, 2 * np.pi, 200001)
    return float(np.trapezoid(np.hypot(a * np.sin(t), b * np.cos(t)), t))


def centre_inside(shape, c, a_px, b_px, rot_deg):
    """Pixels whose centre is inside the ellipse (skimage rasteriser): the 'edge' convention's masks."""
    m = np.zeros(shape, np.uint8)
    rr, cc = sk_ellipse(c[0], c[1], a_px, b_px, rotation=math.radians(rot_deg), shape=shape)
    m[rr, cc] = 1
    return m


def outline_drawn(shape, c, a_px, b_px, rot_deg):
    """cv2.ellipse filled: outline pixels drawn on the curve (HC18-style annotation): 'centre' masks."""
    m = np.zeros(shape, np.uint8)
    cv2.ellipse(m, ((c[1], c[0]), (2 * b_px, 2 * a_px), -rot_deg), 1, -1)
    return m


CASES = [(60, 40, 0), (60, 40, 30), (25, 18, 70), (120, 80, 10), (90, 70, 135)]


@pytest.mark.parametrize("a,b,rot", CASES)
def test_edge_convention_on_centre_inside_masks(a, b, rot):
    sp = (0.2, 0.2)
    m = centre_inside((300, 300), (150.3, 149.6), a, b, rot)
    (s,) = measure_mask(m, sp, contour="edge")
    bio = biometry(s, sp)
    true = _circ(a * 0.2, b * 0.2)
    assert bio["hc"] == pytest.approx(true, rel=0.005)
    assert bio["ofd"] == pytest.approx(2 * a * 0.2, rel=0.01)
    assert bio["bpd"] == pytest.approx(2 * b * 0.2, rel=0.01)
    assert bio["calliper"] == "outer-outer" and bio["contour"] == "edge" and bio["unit"] == "mm"


@pytest.mark.parametrize("a,b,rot", CASES)
def test_centre_convention_on_outline_drawn_masks(a, b, rot):
    sp = (0.15, 0.15)
    m = outline_drawn((300, 300), (150.3, 149.6), a, b, rot)
    (c,) = measure_mask(m, sp, contour="centre")
    (e,) = measure_mask(m, sp, contour="edge")
    true = _circ(a * 0.15, b * 0.15)
    assert c["ellipse"]["circumference"] == pytest.approx(true, rel=0.005)
    # the outer pixel edge of such a mask lies half a pixel outside the drawn curve: reads high
    assert e["ellipse"]["circumference"] > true * 1.002


def test_anisotropic_spacing_known_physical_ellipse():
    """An axis-aligned ellipse of 60 x 40 mm drawn on 0.25 x 0.4 mm pixels."""
    sr, sc = 0.25, 0.4
    A, B = 30.0, 20.0  # physical semi-axes along rows, cols (mm)
    m = centre_inside((300, 200), (150.2, 99.7), A / sr, B / sc, 0)
    (s,) = measure_mask(m, (sr, sc))
    bio = biometry(s, (sr, sc))
    assert bio["hc"] == pytest.approx(_circ(A, B), rel=0.005)
    assert bio["ofd"] == pytest.approx(60.0, rel=0.01) and bio["bpd"] == pytest.approx(40.0, rel=0.01)
    # the OFD callipers run along the rows (the long physical axis), in pixel coordinates
    (r0, c0), (r1, c1) = bio["ofd_endpoints"]
    assert abs(r1 - r0) * sr == pytest.approx(60.0, rel=0.01) and abs(c1 - c0) < 1.0


def test_ellipse_fit_removes_notch_and_bulge():
    sp = (0.2, 0.2)
    clean = centre_inside((260, 260), (130, 130), 80, 55, 20)
    bad = clean.copy()
    bad[120:140, 40:75] = 0  # notch
    bad[40:52, 120:150] = 1  # bulge
    raw = largest(measure_mask(bad, sp))["ellipse"]["circumference"]
    fitted = ellipse_fit_mask(bad, sp)
    fit = largest(measure_mask(fitted, sp))["ellipse"]["circumference"]
    true = _circ(80 * 0.2, 55 * 0.2)
    assert abs(fit - true) < abs(raw - true) or abs(fit - true) / true < 0.02
    # the ellipse-fit mask of a clean ellipse is the same ellipse (Dice ~ 1)
    again = ellipse_fit_mask(clean, sp)
    dice = 2 * (again & clean).sum() / (again.sum() + clean.sum())
    assert dice > 0.99


def test_measure_cli_png_phys_and_spacing_override(tmp_path):
    """A mask PNG with a pHYs chunk: mm from the file; --spacing overrides it; the source is recorded."""
    from typer.testing import CliRunner

    from sonoseg.cli.main import app
    from sonoseg.io.spacing import save_png_with_spacing

    m = outline_drawn((300, 300), (150, 150), 100, 70, 0) * 255  # HC18-style, as the fetal config's contour expects
    save_png_with_spacing(m, tmp_path / "head.png", (0.1, 0.1))
    res = CliRunner().invoke(app, ["measure", str(tmp_path / "head.png"), "-o", str(tmp_path / "o"),
                                   "-c", "configs/fetal_head_biometry.yaml", "--no-progress"])
    assert res.exit_code == 0, res.output
    meas = json.loads((tmp_path / "o" / "head.measurements.json").read_text())
    assert meas["spacing_source"] == "PNG pHYs" and meas["pixel_spacing_mm"] == [0.1, 0.1]
    (frame,) = meas["frames"]
    assert frame["biometry"]["hc"] == pytest.approx(_circ(10.0, 7.0), rel=0.005)
    assert frame["structures"][0]["name"] == "fetal head"
    res = CliRunner().invoke(app, ["measure", str(tmp_path / "head.png"), "-o", str(tmp_path / "o2"),
                                   "--biometry", "--spacing", "0.2", "--no-progress"])
    assert res.exit_code == 0, res.output
    meas = json.loads((tmp_path / "o2" / "head.measurements.json").read_text())
    assert meas["spacing_source"] == "cli --spacing"
    assert meas["frames"][0]["biometry"]["ofd"] == pytest.approx(40.0, rel=0.01)


def test_measure_same_json_as_predict_for_cine_nifti(tmp_path):
    """measure reads predict's 4-D cine mask back: frames, frame time, spacing from the NIfTI."""
    from sonoseg.infer.measure_files import measure_masks
    from sonoseg.infer.outputs import write_mask_nifti

    frames = np.stack([centre_inside((120, 100), (60, 50), 30 + k, 20, 0) for k in range(3)])
    write_mask_nifti(frames, tmp_path / "c.mask.nii.gz", spacing=(0.3, 0.3), frame_time_ms=40.0)
    payload = measure_masks([tmp_path / "c.mask.nii.gz"], tmp_path / "o")
    meas = json.loads((tmp_path / "o" / "c.mask.measurements.json").read_text())
    assert meas["kind"] == "cine" and meas["frame_time_ms"] == pytest.approx(40.0)
    assert [f["time_ms"] for f in meas["frames"]] == pytest.approx([0.0, 40.0, 80.0])
    assert meas["chosen_frame"] == 2 and meas["pixel_spacing_mm"] == pytest.approx([0.3, 0.3])
    assert payload["n_ok"] == 1


def test_measure_bad_mask_is_one_line_and_batch_continues(tmp_path):
    from sonoseg.infer.measure_files import measure_masks

    (tmp_path / "bad.png").write_bytes(b"nope")
    cv2.imwrite(str(tmp_path / "good.png"), centre_inside((50, 50), (25, 25), 10, 8, 0) * 255)
    p = measure_masks([tmp_path / "bad.png", tmp_path / "good.png"], tmp_path / "o")
    assert p["n_ok"] == 1 and p["n_failed"] == 1
    bad = next(r for r in p["results"] if not r["ok"])
    assert "bad.png" in bad["error"] and "\n" not in bad["error"]
