"""Per-image metrics against hand computations, and the empty-mask convention."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sonoseg.errors import InputError
from sonoseg.evaluate import evaluate_pairs, segmentation_metrics

# 3x4 image.  TP = (0,0),(1,0),(1,1) -> 3;  FP = (1,2) -> 1;  FN = (0,1) -> 1;  TN = 12 - 5 = 7
GT = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]], dtype=np.uint8)
PRED = np.array([[1, 0, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0]], dtype=np.uint8)


def test_overlap_metrics_by_hand():
    m = segmentation_metrics(PRED, GT)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (3, 1, 1, 7)
    assert m["dice"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))  # 0.75
    assert m["iou"] == pytest.approx(3 / 5)
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["specificity"] == pytest.approx(7 / 8)
    assert m["accuracy"] == pytest.approx(10 / 12)
    assert not m["gt_empty"] and not m["pred_empty"] and not m["missed"]


def test_asymmetric_precision_recall_by_hand():
    gt = np.zeros((5, 5), bool)
    gt[1:4, 1:4] = True  # 9 px
    pred = np.zeros((5, 5), bool)
    pred[1:3, 1:3] = True  # 4 px, all inside
    m = segmentation_metrics(pred, gt)
    assert m["precision"] == 1.0
    assert m["recall"] == pytest.approx(4 / 9)
    assert m["dice"] == pytest.approx(8 / 13)
    assert m["iou"] == pytest.approx(4 / 9)
    assert m["specificity"] == 1.0
    assert m["accuracy"] == pytest.approx(20 / 25)


def test_mask_encodings_are_equivalent():
    ref = segmentation_metrics(PRED, GT)
    for p, g in ((PRED.astype(bool), GT.astype(bool)), (PRED * 255, GT * 255), (PRED.astype(float), GT.astype(float))):
        m = segmentation_metrics(p, g)
        for k in ("dice", "iou", "precision", "recall", "specificity", "accuracy", "hd95", "assd"):
            assert m[k] == pytest.approx(ref[k])


def test_probability_map_and_bad_shapes_rejected():
    with pytest.raises(ValueError, match="binary"):
        segmentation_metrics(PRED * 0.7, GT)
    with pytest.raises(ValueError, match="shape"):
        segmentation_metrics(PRED[:2], GT)
    with pytest.raises(ValueError, match="labels"):
        segmentation_metrics(PRED * 3, GT, classes=3)


def test_empty_gt_and_empty_pred_is_not_scored():
    z = np.zeros((8, 8), np.uint8)
    m = segmentation_metrics(z, z)
    for k in ("dice", "iou", "precision", "recall", "hd95", "assd"):
        assert math.isnan(m[k]), k
    assert m["specificity"] == 1.0 and m["accuracy"] == 1.0
    assert m["gt_empty"] and m["pred_empty"] and not m["missed"]


def test_empty_gt_with_false_positives():
    z = np.zeros((8, 8), np.uint8)
    p = z.copy()
    p[0, :4] = 1  # 4 FP of 64 px
    m = segmentation_metrics(p, z)
    for k in ("dice", "iou", "precision", "recall", "hd95", "assd"):
        assert math.isnan(m[k]), k
    assert m["specificity"] == pytest.approx(60 / 64)
    assert m["accuracy"] == pytest.approx(60 / 64)
    assert m["gt_empty"] and not m["pred_empty"]


def test_missed_lesion_scores_zero_and_image_diagonal():
    g = np.zeros((20, 30), np.uint8)
    g[5:9, 5:9] = 1
    m = segmentation_metrics(np.zeros_like(g), g, spacing=(0.5, 0.2))
    assert m["dice"] == 0 and m["iou"] == 0 and m["recall"] == 0 and m["precision"] == 0
    diag = math.hypot(20 * 0.5, 30 * 0.2)  # sqrt(136) mm
    assert m["hd95"] == pytest.approx(diag) and m["assd"] == pytest.approx(diag)
    assert m["missed"] and m["pred_empty"] and not m["gt_empty"]
    m_px = segmentation_metrics(np.zeros_like(g), g)
    assert m_px["hd95"] == pytest.approx(math.hypot(20, 30))


def test_empty_vs_empty_does_not_inflate_mean_dice():
    z = np.zeros((4, 4), np.uint8)
    items = [("lesion", PRED, GT, None), ("normal_ok", z[:3], z[:3], None), ("normal_fp", GT, np.zeros_like(GT), None)]
    res = evaluate_pairs(items, n_boot=50)
    assert res.aggregate["dice"]["mean"] == pytest.approx(0.75)  # only the image with a lesion
    assert res.aggregate["dice"]["n"] == 1
    c = res.counts
    assert c["n_images"] == 3 and c["n_empty_gt"] == 2 and c["n_gt_nonempty"] == 1
    assert c["n_empty_gt_correct"] == 1 and c["n_empty_gt_false_positive"] == 1
    assert c["empty_gt_correct_rate"] == pytest.approx(0.5)
    assert c["excluded"]["dice"] == {"n": 2, "reasons": {"empty_gt": 2}}
    assert c["excluded"]["specificity"]["n"] == 0
    # specificity / accuracy use every image: (7/8 + 1 + 8/12) / 3
    assert res.aggregate["specificity"]["n"] == 3
    assert res.aggregate["specificity"]["mean"] == pytest.approx((7 / 8 + 1 + 8 / 12) / 3)


def test_missed_counts_and_lowers_mean():
    g = np.zeros((10, 10), np.uint8)
    g[2:5, 2:5] = 1
    res = evaluate_pairs([("hit", g, g, None), ("miss", np.zeros_like(g), g, None)], n_boot=20)
    assert res.counts["n_missed"] == 1
    assert res.aggregate["dice"]["mean"] == pytest.approx(0.5)
    assert res.aggregate["hd95"]["n"] == 2
    assert res.aggregate["hd95"]["mean"] == pytest.approx(math.hypot(10, 10) / 2)
    assert res.aggregate["precision"]["mean"] == pytest.approx(0.5)


def test_gt_all_foreground_specificity_undefined():
    o = np.ones((4, 4), np.uint8)
    m = segmentation_metrics(o, o)
    assert m["dice"] == 1 and math.isnan(m["specificity"])
    res = evaluate_pairs([("full", o, o, None)], n_boot=10)
    assert res.counts["excluded"]["specificity"]["reasons"] == {"gt_all_foreground": 1}


def test_multiclass_per_class_and_macro_by_hand():
    gt = np.array([[1, 1, 0, 2], [1, 1, 0, 2], [0, 0, 0, 0]])
    pred = np.array([[1, 0, 0, 2], [1, 1, 2, 2], [0, 0, 0, 0]])
    m = segmentation_metrics(pred, gt, classes=4)
    # class 1: TP 3, FP 0, FN 1, TN 8
    assert m[1]["dice"] == pytest.approx(6 / 7) and m[1]["precision"] == 1.0 and m[1]["recall"] == 0.75
    # class 2: TP 2, FP 1, FN 0, TN 9
    assert m[2]["dice"] == pytest.approx(4 / 5) and m[2]["precision"] == pytest.approx(2 / 3)
    assert m[2]["specificity"] == pytest.approx(9 / 10)
    # class 3 absent from both: not scored, and ignored by the macro mean
    assert m[3]["gt_empty"] and math.isnan(m[3]["dice"])
    assert m["macro"]["dice"] == pytest.approx((6 / 7 + 4 / 5) / 2)
    assert m["macro"]["iou"] == pytest.approx((3 / 4 + 2 / 3) / 2)
    assert m["macro"]["accuracy"] == pytest.approx(10 / 12)  # overall multi-class pixel accuracy
    assert not m["macro"]["gt_empty"] and not m["macro"]["missed"]


def test_multiclass_evaluate_pairs_per_class_sections():
    gt = np.array([[1, 1, 0, 2], [1, 1, 0, 2], [0, 0, 0, 0]])
    pred = np.array([[1, 0, 0, 2], [1, 1, 2, 2], [0, 0, 0, 0]])
    only1 = np.where(gt == 1, 1, 0)
    res = evaluate_pairs([("a", pred, gt, None), ("b", only1, only1, None)], classes=3, n_boot=20)
    assert res.per_class[1]["dice"]["n"] == 2
    assert res.per_class[1]["dice"]["mean"] == pytest.approx((6 / 7 + 1) / 2)
    assert res.per_class[2]["dice"]["n"] == 1  # class 2 absent from image b
    assert res.counts_per_class[2]["n_empty_gt"] == 1 and res.counts_per_class[2]["n_empty_gt_correct"] == 1
    assert res.aggregate["dice"]["mean"] == pytest.approx(((6 / 7 + 4 / 5) / 2 + 1) / 2)
    assert {"dice_c1", "dice_c2", "gt_empty_c2"} <= set(res.per_image.columns)


def test_evaluate_pairs_shape_mismatch_names_the_image():
    with pytest.raises(InputError, match="case_7"):
        evaluate_pairs([("case_7", np.zeros((4, 4)), np.zeros((4, 5)), None)])


def test_distances_can_be_skipped():
    m = segmentation_metrics(PRED, GT, distances=False)
    assert m["dice"] == pytest.approx(0.75) and math.isnan(m["hd95"]) and math.isnan(m["assd"])
    assert not math.isnan(segmentation_metrics(PRED, GT)["hd95"])
