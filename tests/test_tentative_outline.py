"""The tentative outline (docs/breast_v4/tentative_outline_rule.md): where the class head finds a lesion by
the model's stored policy and the thresholded mask is empty, the region of P >= half the peak around the
peak becomes the mask, marked tentative in the decision, its note, the overlay caption and the SEG."""

from __future__ import annotations

import numpy as np
import pytest

from sonoseg.config import SonosegConfig
from sonoseg.infer.postprocess import tentative_region
from sonoseg.infer.predictor import Predictor, merge_postprocess

NAMES = ["benign", "malignant", "normal"]


def test_tentative_region_is_the_half_maximum_component_around_the_peak():
    p = np.zeros((40, 40), np.float32)
    p[5:15, 5:15] = 0.30  # the peak's blob: a 10x10 plateau at 0.30 ...
    p[9, 9] = 0.40  # ... with its peak here
    p[25:35, 25:35] = 0.25  # above half the peak (0.20) but not connected to it
    p[15:20, 5:15] = 0.15  # touching the peak's blob, below half the peak
    region = tentative_region(p, fraction=0.5, min_peak=0.1)
    expect = np.zeros_like(region)
    expect[5:15, 5:15] = True
    assert np.array_equal(region, expect)
    assert not tentative_region(p * 0.2, fraction=0.5, min_peak=0.1).any()  # peak 0.08 < 0.1: nothing
    assert tentative_region(p, fraction=0.3, min_peak=0.1)[17, 9]  # 0.15 >= 0.3 x 0.40: joins the region
    with pytest.raises(ValueError, match="2-D"):
        tentative_region(np.zeros((2, 4, 4)))


class Faint:
    """A lesion the mask head sees only faintly: P 0.3 at the centre of a 32x32 grid (logit -0.85), far
    below the 0.5 threshold; class logits fixed per test."""

    def __init__(self, class_logits):
        self.class_logits = np.asarray([class_logits], np.float32)

    def run_all(self, x):
        n, _, h, w = x.shape
        seg = np.full((n, 1, h, w), -6.0, np.float32)
        seg[:, :, 12:20, 12:20] = np.log(0.3 / 0.7)
        return seg, np.repeat(self.class_logits, n, 0)


def _cfg(rule="threshold", tentative=True):
    post = {"tentative_outline": tentative}
    return SonosegConfig.model_validate({
        "preprocess": {"size": [32, 32], "clahe": False, "median_kernel": 0}, "postprocess": post,
        "model": {"classification": {"names": NAMES, "lesion_rule": rule, "no_lesion_threshold": 0.9}}})


LESION = [2.0, 0.0, 0.0]  # P(normal) 0.11 < 0.9: the head finds a lesion
NORMAL = [0.0, 0.0, 5.0]  # P(normal) 0.99: no lesion


def test_predictor_outlines_the_faint_region_only_where_the_head_finds_a_lesion():
    img = np.zeros((32, 32), np.uint8)
    found = Predictor(Faint(LESION), _cfg()).predict(img)
    assert found.tentative and found.mask[12:20, 12:20].all() and found.mask.sum() == 64
    assert found.probability.max() < 0.5  # nothing reached the threshold: the outline is the rescue
    normal = Predictor(Faint(NORMAL), _cfg()).predict(img)
    assert not normal.tentative and not normal.mask.any()
    off = Predictor(Faint(LESION), _cfg(tentative=False)).predict(img)
    assert not off.tentative and not off.mask.any()
    # off unless the model or the caller turns it on (the rule's val check turned it off for both tiers)
    assert not merge_postprocess(SonosegConfig()).tentative_outline
    assert merge_postprocess(_cfg(tentative=False), tentative_outline=True).tentative_outline
    assert not merge_postprocess(_cfg(), tentative_outline=False).tentative_outline
    # the arg-max rule decides too: P(normal) 0.33 < P(benign) 0.79 -> a lesion, outlined
    assert Predictor(Faint(LESION), _cfg("argmax")).predict(img).tentative
    assert not Predictor(Faint(NORMAL), _cfg("argmax")).predict(img).mask.any()
    # the model's postprocessing still applies: a min size above the region's area leaves it empty
    small = Predictor(Faint(LESION), _cfg(), postprocess=merge_postprocess(_cfg(), min_size=100)).predict(img)
    assert not small.tentative and not small.mask.any()


def test_decision_caption_and_seg_description_say_tentative():
    import pydicom
    from pydicom.dataset import Dataset

    from sonoseg.infer.run import decision_label, image_decision
    from sonoseg.outputs.seg_class_codes import add_class_finding

    pred = Predictor(Faint(LESION), _cfg())
    probs = pred.predict(np.zeros((32, 32), np.uint8)).class_probabilities
    d = image_decision(pred, 64, probs, tentative=True)
    assert d["found"] and d["outline"] == "tentative" and "tentative outline" in d["note"]
    assert decision_label(d).startswith("benign") and "(tentative outline)" in decision_label(d)
    plain = image_decision(pred, 64, probs)
    assert "outline" not in plain and "tentative" not in plain["note"] + decision_label(plain)
    assert "outline" not in image_decision(pred, 0, probs, tentative=True)  # nothing drawn: nothing to mark
    desc = Dataset()
    item = Dataset()
    desc.SegmentedPropertyTypeCodeSequence = pydicom.Sequence([item])
    assert add_class_finding(desc, d).SegmentDescription.startswith("TENTATIVE outline; class head: benign")
    assert len(desc.SegmentDescription) <= 64


def test_evaluate_counts_the_tentative_outline_and_the_flag_turns_it_off(tmp_path):
    """``evaluate`` with ``tentative_outline=True`` scores the outline as the mask (a lesion found by the
    mask) and records it per image; the model's own setting (off) gives the plain mask."""
    import cv2
    import pandas as pd
    import torch

    from sonoseg.evaluate.options import EvaluateOptions
    from sonoseg.evaluate.run import evaluate_model
    from sonoseg.models import create_model_from_config
    from sonoseg.train.checkpoint import save_checkpoint

    ds = tmp_path / "ds"
    (ds / "images").mkdir(parents=True)
    (ds / "masks").mkdir()
    rows = []
    for i in range(3):
        img = np.full((32, 32), 40, np.uint8)
        m = np.zeros((32, 32), np.uint8)
        m[10 + i:20, 10:20] = 255
        cv2.imwrite(str(ds / "images" / f"c{i}.png"), img)
        cv2.imwrite(str(ds / "masks" / f"c{i}.png"), m)
        rows.append({"stem": f"c{i}", "class": "benign"})
    pd.DataFrame(rows).to_csv(ds / "labels.csv", index=False)
    cfg = SonosegConfig.model_validate({
        "preprocess": {"size": [32, 32], "clahe": False, "median_kernel": 0},
        "model": {"name": "fpn", "encoder": "mobilenet_v2", "classification": {
            "names": NAMES, "lesion_rule": "threshold", "no_lesion_threshold": 0.999}}})
    torch.manual_seed(0)
    net = create_model_from_config(cfg.model)
    with torch.no_grad():  # a segmentation head that never reaches 0.5: every plain mask is empty
        last = [m for n, m in net.named_modules() if "segmentation_head" in n and isinstance(m, torch.nn.Conv2d)][-1]
        last.weight.mul_(1e-3)
        last.bias.fill_(-1.0)  # P ~ 0.27 everywhere, with tiny variation: the peak's half-max region is large
    ck = save_checkpoint(tmp_path / "m.pt", config=cfg, model_state=net.state_dict())
    common = dict(model=ck, split_file=None, backend="torch", threads=1, n_boot=0, report=False)
    evaluate_model(ds, EvaluateOptions(out_dir=tmp_path / "on", tentative_outline=True, **common), log=lambda *_: None)
    evaluate_model(ds, EvaluateOptions(out_dir=tmp_path / "off", **common), log=lambda *_: None)  # the model's: off
    on_cls = pd.read_csv(tmp_path / "on" / "per_image_class.csv")
    off_cls = pd.read_csv(tmp_path / "off" / "per_image_class.csv")
    assert on_cls["tentative_outline"].all() and not off_cls["tentative_outline"].any()
    on_img = pd.read_csv(tmp_path / "on" / "per_image.csv")
    off_img = pd.read_csv(tmp_path / "off" / "per_image.csv")
    assert off_img["pred_empty"].all() and not on_img["pred_empty"].any()
    assert (on_img["dice"] > 0).all() and (off_img["dice"] == 0).all()


def test_choose_operating_point_counts_a_tentative_outline_as_an_empty_mask(tmp_path):
    """The outline exists because of the stored policy that the script replaces, so a candidate policy must
    not see it as a segmented region (``mask_or_threshold`` would otherwise never miss such an image)."""
    import runpy

    d = tmp_path / "ev" / "src"
    d.mkdir(parents=True)
    (d / "per_image.csv").write_text("stem,dice,pred_empty\na,0.4,False\nb,0.8,False\nc,0.0,True\n")
    (d / "per_image_class.csv").write_text(
        "stem,true_class,p_benign,p_malignant,p_normal,tentative_outline\n"
        "a,benign,0.5,0.2,0.3,True\nb,benign,0.7,0.2,0.1,False\nc,normal,0.1,0.1,0.8,False\n")
    rows, names = runpy.run_path("scripts/choose_operating_point.py")["read_rows"](tmp_path / "ev")
    assert names == ["benign", "malignant", "normal"]
    assert [r["mask_empty"] for r in rows] == [True, False, True]
