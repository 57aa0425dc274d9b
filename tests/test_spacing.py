"""Spacing for every input: --spacing, labels.csv, PNG pHYs; the source is recorded in every output;
evaluate's measurement-error report against ground-truth masks of known size."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from skimage.draw import ellipse as sk_ellipse

from sonoseg.errors import ConfigError
from sonoseg.io.spacing import parse_spacing, png_phys_spacing, resolve_spacing, save_png_with_spacing


def test_parse_spacing():
    assert parse_spacing("0.1") == (0.1, 0.1)
    assert parse_spacing("0.1,0.25") == (0.1, 0.25)
    assert parse_spacing([0.3, 0.2]) == (0.3, 0.2)
    assert parse_spacing(None) is None
    for bad in ("abc", "0", "-1,2", "1,2,3"):
        with pytest.raises(ConfigError):
            parse_spacing(bad)


def test_png_phys_read_and_screen_defaults_ignored(tmp_path):
    from sonoseg.io import read_meta

    img = np.zeros((40, 60), np.uint8)
    save_png_with_spacing(img, tmp_path / "a.png", (0.12, 0.2))
    meta = read_meta(tmp_path / "a.png")
    assert meta.pixel_spacing_mm == pytest.approx((0.12, 0.2), abs=1e-4)
    assert meta.spacing_source == "PNG pHYs"
    Image.fromarray(img).save(tmp_path / "b.png", dpi=(72, 72))  # an editor's default: says nothing
    assert read_meta(tmp_path / "b.png").pixel_spacing_mm is None
    assert png_phys_spacing({"aspect": (1, 1)}) is None


def test_precedence():
    assert resolve_spacing((0.5, 0.5), "PixelSpacing", "0.1", (0.2, 0.2)) == ((0.1, 0.1), "cli --spacing")
    assert resolve_spacing((0.5, 0.5), "PixelSpacing", None, (0.2, 0.3)) == ((0.2, 0.3), "labels.csv")
    assert resolve_spacing((0.5, 0.4), "PixelSpacing", None, None) == ((0.5, 0.4), "PixelSpacing")
    assert resolve_spacing(None, None) == (None, None)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    from sonoseg.config import load_config
    from sonoseg.models import create_model_from_config
    from sonoseg.train.checkpoint import save_checkpoint

    cfg = load_config(None, ["model.name=unet", "model.params={base_channels: 4, depth: 2}", "preprocess.size=[64, 64]"])
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "tiny.pt", config=cfg,
                           model_state=create_model_from_config(cfg.model).state_dict())


def test_predict_spacing_override_recorded_everywhere(tiny_ckpt, tmp_path):
    from sonoseg.infer.options import PredictOptions
    from sonoseg.infer.run import predict_inputs

    img = (np.random.default_rng(0).random((70, 90)) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    opts = PredictOptions(model=tiny_ckpt, threads=1, spacing="0.2,0.3", threshold=0.01)
    payload = predict_inputs([tmp_path / "a.png"], tmp_path / "o", opts, log=lambda m: None)
    (r,) = payload["results"]
    assert payload["spacing_override_mm"] == [0.2, 0.3] and payload["threshold"] == 0.01
    assert r["summary"]["spacing_source"] == "cli --spacing" and r["summary"]["unit"] == "mm"
    meas = json.loads(Path(r["measurements"]).read_text())
    assert meas["spacing_source"] == "cli --spacing" and meas["pixel_spacing_mm"] == [0.2, 0.3]
    s = meas["frames"][0]["structures"][0]
    assert s["area"] == pytest.approx(s["area_px"] * 0.06)
    with Image.open(r["mask"]) as im:  # the mask PNG carries the spacing too, and label values 0/1
        assert png_phys_spacing(im.info) == pytest.approx((0.2, 0.3), abs=1e-4)
        assert set(np.unique(np.asarray(im)).tolist()) <= {0, 1}


def _ellipse_dataset(root: Path, spacing_col: bool) -> list[tuple[float, float]]:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    axes = [(20, 14), (26, 18), (16, 12)]
    rows = ["image,class,spacing"]
    for i, (a, b) in enumerate(axes):
        m = np.zeros((96, 96), np.uint8)
        rr, cc = sk_ellipse(48, 48, a, b, shape=m.shape)
        m[rr, cc] = 255
        img = (np.random.default_rng(i).random((96, 96)) * 60 + m * 0.6).astype(np.uint8)
        cv2.imwrite(str(root / "images" / f"e{i}.png"), img)
        cv2.imwrite(str(root / "masks" / f"e{i}.png"), m)
        rows.append(f"e{i}.png,benign,0.25")
    if spacing_col:
        (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return axes


def test_evaluate_labels_spacing_and_measurement_agreement(tiny_ckpt, tmp_path):
    from sonoseg.evaluate.options import EvaluateOptions
    from sonoseg.evaluate.run import evaluate_model

    axes = _ellipse_dataset(tmp_path / "ds", spacing_col=True)
    opts = EvaluateOptions(model=tiny_ckpt, out_dir=tmp_path / "ev", threads=1, n_boot=10, measurements=True,
                           biometry=True)
    res = evaluate_model(tmp_path / "ds", opts, log=lambda m: None)
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["spacing_sources"] == {"labels.csv": 3} and res.units == "mm"
    with open(tmp_path / "ev" / "measurements_per_image.csv") as fh:
        rows = {r["image"]: r for r in csv.DictReader(fh)}
    for i, (a, b) in enumerate(axes):  # ground-truth side: the drawn ellipse, in mm
        assert float(rows[f"e{i}"]["area_gt"]) == pytest.approx(math.pi * a * b * 0.0625, rel=0.03)
        assert float(rows[f"e{i}"]["ofd_gt"]) == pytest.approx(2 * a * 0.25, rel=0.02)
    agree = json.loads((tmp_path / "ev" / "measurement_agreement.json").read_text())["quantities"]
    assert {"area", "hc", "bpd", "ofd"} <= set(agree)
    assert (tmp_path / "ev" / "bland_altman.png").is_file() or all(v["n"] == 0 for v in agree.values())
    opts2 = EvaluateOptions(model=tiny_ckpt, out_dir=tmp_path / "ev2", threads=1, n_boot=10, spacing="0.5")
    res2 = evaluate_model(tmp_path / "ds", opts2, log=lambda m: None)
    assert json.loads((tmp_path / "ev2" / "metrics.json").read_text())["spacing_sources"] == {"cli --spacing": 3}


def test_agreement_statistics_known_values():
    from sonoseg.evaluate.agreement import agreement

    gt = [10.0, 20.0, 30.0, 40.0]
    d = [1.0, -1.0, 3.0, 1.0]  # bias 1, sd = sqrt(8/3)
    rows = [{"unit": "mm", "hc_pred": g + e, "hc_gt": g} for g, e in zip(gt, d)] + [{"unit": "mm", "hc_pred": None, "hc_gt": 5.0}]
    a = agreement(rows, ["hc"])["hc"]
    sd = math.sqrt(8 / 3)
    assert a["n"] == 4 and a["n_missing"] == 1
    assert a["bias"] == pytest.approx(1.0) and a["mean_abs_error"] == pytest.approx(1.5)
    assert a["loa_low"] == pytest.approx(1 - 1.96 * sd) and a["loa_high"] == pytest.approx(1 + 1.96 * sd)


def test_config_file_postprocess_applies_unless_a_flag_is_given(tiny_ckpt, tmp_path):
    from sonoseg.infer.predictor import Predictor
    from sonoseg.infer.options import ModelOptions
    from sonoseg.infer.run import apply_config

    cfg = tmp_path / "c.yaml"
    cfg.write_text("postprocess: {keep_largest: true, threshold: 0.3}\nmeasure: {biometry: true, contour: centre}\n")
    p = Predictor.from_path(tiny_ckpt, ModelOptions(backend="torch", threads=1))
    apply_config(p, cfg)
    assert p.post.keep_largest and p.threshold == 0.3 and p.config.measure.biometry
    assert p.config.measure.contour == "centre" and not p.post.fill_holes  # not in the file: the model's
    flags = ModelOptions(backend="torch", threads=1, keep_largest=False, threshold=0.7)
    q = Predictor.from_path(tiny_ckpt, flags)
    apply_config(q, cfg, flags)
    assert not q.post.keep_largest and q.threshold == 0.7  # flags win
