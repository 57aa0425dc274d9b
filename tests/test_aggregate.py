"""Summaries, bootstrap CI, metrics.json / per_image.csv."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from sonoseg.evaluate import METRICS, aggregate, bootstrap_ci, evaluate_pairs, write_metrics


def test_summary_by_hand_and_nan_excluded():
    rows = [{"dice": 1.0}, {"dice": 2.0}, {"dice": float("nan")}, {"dice": 3.0}, {"dice": 4.0}, {"dice": None}]
    s = aggregate(rows, ["dice", "hd95"], n_boot=200)
    d = s["dice"]
    assert d["n"] == 4
    assert d["mean"] == pytest.approx(2.5)
    assert d["median"] == pytest.approx(2.5)
    assert d["std"] == pytest.approx(math.sqrt(((1.5**2) * 2 + (0.5**2) * 2) / 3))  # ddof=1
    assert 1.0 <= d["ci95"][0] < 2.5 < d["ci95"][1] <= 4.0
    assert s["hd95"]["n"] == 0 and math.isnan(s["hd95"]["mean"])  # missing column -> n = 0


def test_list_and_dataframe_inputs_agree():
    rows = [{"dice": v, "iou": v / 2} for v in np.linspace(0, 1, 11)]
    a = aggregate(rows, ["dice", "iou"], n_boot=100, seed=3)
    b = aggregate(pd.DataFrame(rows), ["dice", "iou"], n_boot=100, seed=3)
    assert a == b


def test_bootstrap_deterministic_per_seed():
    x = np.random.default_rng(0).random(50)
    assert bootstrap_ci(x, 500, seed=1) == bootstrap_ci(x, 500, seed=1)
    assert bootstrap_ci(x, 500, seed=1) != bootstrap_ci(x, 500, seed=2)


def test_bootstrap_ci_contains_mean_and_shrinks_with_n():
    rng = np.random.default_rng(42)
    widths = []
    for n in (20, 2000):
        x = rng.normal(0.8, 0.1, size=n)
        lo, hi = bootstrap_ci(x, 1000, seed=0)
        assert lo < x.mean() < hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 5  # ~ 1/sqrt(100) = 1/10 expected


def test_bootstrap_ci_matches_normal_approximation():
    x = np.random.default_rng(5).exponential(1.0, size=400)
    lo, hi = bootstrap_ci(x, 4000, seed=0)
    half = 1.96 * x.std(ddof=1) / math.sqrt(x.size)
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.12)
    assert (lo + hi) / 2 == pytest.approx(x.mean(), abs=0.25 * half)


def test_bootstrap_blocks_do_not_change_result():
    x = np.random.default_rng(1).random(100)
    assert bootstrap_ci(x, 300, seed=4, max_elems=10**9) == pytest.approx(bootstrap_ci(x, 300, seed=4, max_elems=700))


def test_single_value_and_empty():
    s = aggregate([{"dice": 0.7}], ["dice"])["dice"]
    assert s["n"] == 1 and s["std"] == 0.0 and s["ci95"] == [0.7, 0.7]
    e = aggregate([], ["dice"])["dice"]
    assert e["n"] == 0 and all(math.isnan(v) for v in e["ci95"])


def _pairs(rng, n=6, size=32):
    items = []
    for i in range(n):
        g = np.zeros((size, size), np.uint8)
        r = rng.integers(4, 10)
        g[8 : 8 + r, 8 : 8 + r] = 1
        p = np.roll(g, int(rng.integers(0, 4)), axis=1)
        items.append((f"img{i:02d}", p, g, (0.4, 0.25)))
    z = np.zeros((size, size), np.uint8)
    items.append(("normal", z, z, (0.4, 0.25)))
    return items


def test_write_metrics_json_and_csv(tmp_path):
    res = evaluate_pairs(_pairs(np.random.default_rng(0)), n_boot=100, seed=0)
    paths = write_metrics(res, tmp_path / "eval")
    text = paths["metrics"].read_text()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    for m in METRICS:
        assert {"mean", "std", "ci95", "n"} <= set(data[m])
        assert data[m]["mean"] == pytest.approx(res.aggregate[m]["mean"])
        assert len(data[m]["ci95"]) == 2
    assert data["units"] == "mm"
    assert data["dice"]["n"] == 6 and data["specificity"]["n"] == 7
    assert data["counts"]["n_empty_gt"] == 1 and data["counts"]["n_empty_gt_correct"] == 1
    assert data["counts"]["excluded"]["dice"]["reasons"] == {"empty_gt": 1}
    csv = pd.read_csv(paths["per_image"])
    assert list(csv["stem"]) == [f"img{i:02d}" for i in range(6)] + ["normal"]
    assert np.allclose(csv["dice"].to_numpy(), res.per_image["dice"].to_numpy(dtype=float), equal_nan=True)
    assert math.isnan(csv.loc[6, "dice"])


def test_checkpoint_metrics_read_back_what_evaluate_wrote(tmp_path):
    """The ship scripts store an evaluation's summaries in a checkpoint through one reader: the headline
    segmentation metrics (not specificity, counts or conventions), plus the class metrics when present."""
    from sonoseg.errors import InputError
    from sonoseg.evaluate.aggregate import read_checkpoint_metrics

    res = evaluate_pairs(_pairs(np.random.default_rng(0)), n_boot=100, seed=0)
    paths = write_metrics(res, tmp_path / "eval")
    got = read_checkpoint_metrics(tmp_path / "eval")
    assert set(got) == {"test"} and set(got["test"]) == {"dice", "iou", "precision", "recall", "hd95", "assd"}
    assert got["test"]["dice"]["mean"] == pytest.approx(res.aggregate["dice"]["mean"])
    (tmp_path / "eval" / "class_metrics.json").write_text(json.dumps({"metrics": {"auc": 0.9}, "other": 1}))
    assert read_checkpoint_metrics(paths["metrics"]) == {**got, "test_class": {"auc": 0.9}}  # the file or its folder
    with pytest.raises(InputError, match="no metrics.json"):
        read_checkpoint_metrics(tmp_path)


def test_write_metrics_multiclass_has_per_class(tmp_path):
    g = np.zeros((16, 16), np.uint8)
    g[2:6, 2:6] = 1
    g[9:13, 9:13] = 2
    p = g.copy()
    p[9:13, 9:11] = 0
    res = evaluate_pairs([("a", p, g, None), ("b", g, g, None)], classes=3, n_boot=50)
    data = json.loads(write_metrics(res, tmp_path)["metrics"].read_text())
    assert data["classes"] == 3 and data["units"] == "px"
    assert data["per_class"]["1"]["dice"]["mean"] == pytest.approx(1.0)
    assert data["per_class"]["2"]["dice"]["mean"] == pytest.approx((2 * 8 / (8 + 16) + 1) / 2)
    assert data["per_class"]["2"]["counts"]["n_images"] == 2
    assert data["dice"]["mean"] == pytest.approx(((1 + 2 * 8 / 24) / 2 + 1) / 2)
