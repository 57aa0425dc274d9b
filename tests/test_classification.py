"""Image-level class head (issue 10): model building, joint loss, class metrics against hand
computations, the "no lesion" decision rule, and a CLI round trip train -> evaluate -> export -> predict
on a phantom dataset with the classes normal / benign / malignant."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sonoseg.errors import ConfigError
from sonoseg.metrics.classification import class_metrics, confusion_matrix, expected_calibration_error, roc_auc
from sonoseg.infer.decision import decide
from sonoseg.models import create_model, list_models, unwrap
from sonoseg.models.registry import get_entry

HEAD = {"classes": 3, "dropout": 0.0, "pooling": "avg"}


# ---------------------------------------------------------------- model


def test_head_builds_for_every_encoder_model_and_unet_refuses():
    built = 0
    for name in list_models():
        entry = get_entry(name)
        if name == "ensemble":  # its members carry the heads: averaged in tests/test_ensemble.py
            assert entry.supports_classification
            continue
        if not entry.supports_classification:
            with pytest.raises(ConfigError, match="no classification head"):
                create_model(name, classification=HEAD)
            continue
        model = create_model(name, "mobilenet_v2", classification=HEAD).eval()
        head = unwrap(model).classification_head  # smp's aux head: pooling -> dropout -> linear
        assert [m.out_features for m in head.modules() if isinstance(m, torch.nn.Linear)] == [3], name
        assert model.spec["classification"]["classes"] == 3
        if name in ("fpn", "pan"):  # forward through the padding wrapper (PAN: the largest minimum size)
            side = max(64, model.min_size)
            with torch.no_grad():
                seg, cls = model(torch.rand(2, 1, side + 5, side - 3))
            assert seg.shape == (2, 1, side + 5, side - 3) and cls.shape == (2, 3), name
        built += 1
    assert built == 9  # the nine smp architectures
    assert not get_entry("unet").supports_classification
    with pytest.raises(ConfigError, match="at least 2 classes"):
        create_model("fpn", "mobilenet_v2", classification={"classes": 1})


def test_joint_loss_adds_weighted_cross_entropy_and_ignores_unknown_classes():
    from sonoseg.train.losses import JointLoss, balanced_class_weights, build_loss

    assert balanced_class_weights([0, 0, 0, 1, -100], 3) == [4 / 9, 4 / 3, 0.0]
    seg = build_loss("dice_bce", classes=1)
    logits, mask = torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8)
    cl = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    y = torch.tensor([0, 2])
    loss = JointLoss(seg, weight=0.5, class_weights=[1.0, 1.0, 3.0])
    w = torch.tensor([1.0, 3.0])  # weights of the two targets
    nll = -torch.stack([torch.log_softmax(cl[0], 0)[0], torch.log_softmax(cl[1], 0)[2]])
    expected = seg(logits, mask) + 0.5 * (w * nll).sum() / w.sum()
    assert torch.allclose(loss((logits, cl), mask, y), expected)
    # unknown class (-100) adds nothing; a plain tensor output is segmentation only
    assert torch.allclose(loss((logits, cl), mask, torch.tensor([-100, -100])), seg(logits, mask))
    assert torch.allclose(loss(logits, mask, y), seg(logits, mask))


def test_dataset_yields_class_index(tmp_path):
    from sonoseg.config import PreprocessConfig
    from sonoseg.data import SegmentationDataset, discover_dataset
    from sonoseg.data.phantom import write_phantom_dataset

    root = write_phantom_dataset(tmp_path / "ds", n=6, size=(48, 48), classes=("normal", "benign", "malignant"))
    samples = discover_dataset(root)
    ds = SegmentationDataset(samples, PreprocessConfig(size=(48, 48)), class_names=["benign", "malignant", "normal"])
    got = {ds[i]["stem"]: int(ds[i]["cls"]) for i in range(len(ds))}
    want = {s.stem: ["benign", "malignant", "normal"].index(s.cls) for s in samples}
    assert got == want
    normal = [i for i in range(len(ds)) if samples[i].cls == "normal"]
    assert normal and all(float(ds[i]["mask"].sum()) == 0 for i in normal)  # normal: empty mask
    assert int(SegmentationDataset(samples, PreprocessConfig(size=(48, 48)))[0]["cls"]) == -100


# ---------------------------------------------------------------- metrics (hand-computed)


def test_auc_and_confusion_by_hand():
    # positives 0.8, 0.4; negatives 0.6, 0.4, 0.1: pairs won 1+1+1 + 0+0.5+1 = 4.5 of 6
    assert roc_auc(np.array([0.8, 0.4, 0.6, 0.4, 0.1]), np.array([1, 1, 0, 0, 0], bool)) == pytest.approx(0.75)
    assert math.isnan(roc_auc(np.array([0.1, 0.2]), np.array([0, 0], bool)))
    assert confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), 3).tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]


def test_class_metrics_by_hand_with_a_class_without_positives():
    names = ["benign", "malignant", "normal"]
    # true: b b b m m (no normal image); predicted: b b m m b
    probs = np.array([[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1]])
    labels = np.array([0, 0, 0, 1, 1])
    res = class_metrics(probs, labels, names, pair=("benign", "malignant"), n_boot=200)
    m = {k: v["value"] for k, v in res["metrics"].items()}
    assert res["confusion_matrix"] == [[2, 1, 0], [1, 1, 0], [0, 0, 0]]
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["sensitivity_benign"] == pytest.approx(2 / 3) and m["specificity_benign"] == pytest.approx(1 / 2)
    assert m["sensitivity_malignant"] == pytest.approx(1 / 2) and m["specificity_malignant"] == pytest.approx(2 / 3)
    assert math.isnan(m["sensitivity_normal"]) and m["specificity_normal"] == 1.0  # no normal image at all
    assert math.isnan(m["auc_normal_vs_rest"])
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)  # undefined class left out
    # malignant vs benign by P(m)/(P(b)+P(m)): m scores 0.6/0.8=.778, 0.4/0.9=.444; b .053, .333, .667 -> 5/6
    assert m["auc_benign_vs_malignant"] == pytest.approx(5 / 6)
    lo, hi = res["metrics"]["accuracy"]["ci95"]
    assert 0 <= lo <= 0.6 <= hi <= 1
    # ECE: top confidences .9 (right), .6 (right), .6 (wrong), .7 (right), .5 (wrong); the two .6 share a
    # bin with accuracy 1/2: (|.9-1| + 2|.6-.5| + |.7-1| + |.5-0|) / 5
    ece, bins = expected_calibration_error(probs, labels, bins=10)
    assert ece == pytest.approx((0.1 + 2 * 0.1 + 0.3 + 0.5) / 5)
    assert sum(b["n"] for b in bins) == 5


def test_decision_rule_table():
    names = ["benign", "malignant", "normal"]
    normal, malignant = np.array([0.1, 0.1, 0.8]), np.array([0.1, 0.8, 0.1])
    d = decide(0, normal, names, "normal")
    assert (d["lesion_found"], d["source"], d["agreement"]) == (False, "both", True)
    d = decide(50, normal, names, "normal")
    assert (d["lesion_found"], d["source"], d["agreement"], d["region_is_finding"]) == (False, "class head", False, False)
    d = decide(50, malignant, names, "normal")
    assert (d["lesion_found"], d["class"], d["region_is_finding"]) == (True, "malignant", True)
    d = decide(0, malignant, names, "normal")
    assert (d["lesion_found"], d["source"], d["region_is_finding"]) == (True, "class head", False)
    assert "not localised" in d["note"]
    d = decide(0, None, [], None)  # no class head: the mask decides
    assert (d["lesion_found"], d["source"], d["class"]) == (False, "mask", None)


# ---------------------------------------------------------------- CLI round trip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from typer.testing import CliRunner

    from sonoseg.cli.main import app
    from sonoseg.data.phantom import write_phantom_dataset

    tmp = tmp_path_factory.mktemp("cls")
    root = write_phantom_dataset(tmp / "ds", n=24, size=(64, 64), seed=3, classes=("normal", "benign", "malignant"))
    res = CliRunner().invoke(app, [
        "train", str(root), "--arch", "fpn", "--encoder", "mobilenet_v2", "--epochs", "2", "--out", str(tmp / "runs"),
        "--name", "r", "--no-progress", "--set", "model.classification={dropout: 0.0}", "--set", "preprocess.size=[64, 64]",
        "--set", "train.threads=1", "--set", "data.batch_size=4", "--set", f"data.cache_dir={tmp / 'cache'}",
    ])
    assert res.exit_code == 0, res.output
    return tmp, root, tmp / "runs" / "r"


def test_checkpoint_carries_class_names(trained):
    from sonoseg.train.checkpoint import load_model

    _, _, run = trained
    model, cfg = load_model(run / "best.pt")
    assert cfg.model.class_names() == ["benign", "malignant", "normal"]  # sorted names from labels.csv
    assert model(torch.zeros(1, 1, 64, 64))[1].shape == (1, 3)
    assert "val_bacc" in (run / "metrics.csv").read_text().splitlines()[0]


def test_cli_evaluate_writes_class_metrics(trained):
    from typer.testing import CliRunner

    from sonoseg.cli.main import app

    tmp, root, run = trained
    res = CliRunner().invoke(app, ["evaluate", str(root), "--model", str(run / "best.pt"), "--split-file",
                                   str(run / "split.csv"), "--split", "train", "--out", str(tmp / "ev"),
                                   "--no-progress", "--n-boot", "50"])
    assert res.exit_code == 0, res.output
    assert "balanced_accuracy" in res.output
    cm = json.loads((tmp / "ev" / "class_metrics.json").read_text())
    per = [ln.split(",") for ln in (tmp / "ev" / "per_image_class.csv").read_text().splitlines()[1:]]
    # the confusion matrix is the count of (true, predicted) pairs in the per-image file
    names = cm["names"]
    counts = np.zeros((3, 3), int)
    for row in per:
        counts[names.index(row[1]), names.index(row[5])] += 1
    assert cm["confusion_matrix"] == counts.tolist() and cm["n"] == len(per) == sum(map(sum, cm["confusion_matrix"]))
    assert set(cm["segmentation_per_class"]) == {"benign", "malignant", "normal"}
    assert cm["no_lesion_decision"]["n_no_lesion_images"] == sum(r[1] == "normal" for r in per)
    for f in ("confusion_matrix.csv", "confusion_matrix.png", "roc.png", "reliability.png"):
        assert (tmp / "ev" / f).stat().st_size > 0


@pytest.mark.slow  # int8 quantisation
def test_export_carries_both_outputs_with_same_class_probabilities(trained):
    from sonoseg.export import ExportOptions, export_model, split_grids
    from sonoseg.runtime.backends import create_backend
    from sonoseg.train.checkpoint import load_model

    tmp, root, run = trained
    model, cfg = load_model(run / "best.pt")
    val = split_grids(root, run / "split.csv", "val", cfg, cache_dir=tmp / "cache")
    calib = [p[0] for p in split_grids(root, run / "split.csv", "train", cfg, n=6, cache_dir=tmp / "cache")]
    rep = export_model(run / "best.pt", ExportOptions(out_dir=tmp / "ex", threads=1), calib_images=calib, val_pairs=val)
    assert set(rep.files) == {"onnx", "onnx-int8", "torchscript"}
    assert rep.class_prob_diff["onnx"] < 1e-5 and rep.class_prob_diff["torchscript"] < 1e-5
    assert rep.class_agreement["onnx-int8"] == 1.0
    x = np.random.default_rng(0).random((2, 1, 64, 64)).astype(np.float32)
    with torch.no_grad():
        want = torch.softmax(model(torch.from_numpy(x))[1], 1).numpy()
    for f in ("onnx", "torchscript"):
        be = create_backend("onnx" if f == "onnx" else "torch", rep.files[f], threads=1)
        seg, cls = be.run_all(x)
        assert seg.shape == (2, 1, 64, 64)
        e = np.exp(cls - cls.max(1, keepdims=True))
        np.testing.assert_allclose(e / e.sum(1, keepdims=True), want, atol=1e-5)
        be.close()


def test_cli_predict_reports_class_in_table_json_overlay_and_seg(trained, monkeypatch):
    import pydicom
    from typer.testing import CliRunner

    from sonoseg.cli.main import app
    from sonoseg.data.phantom import write_phantom_dataset

    tmp, _, run = trained
    monkeypatch.setenv("COLUMNS", "120")
    dcm = write_phantom_dataset(tmp / "dcm", n=2, size=(64, 64), seed=9, classes=("malignant",), dicom=True)
    res = CliRunner().invoke(app, ["predict", str(dcm / "images"), "--model", str(run / "best.pt"), "--out",
                                   str(tmp / "pred"), "--no-progress", "--threads", "1"])
    assert res.exit_code == 0, res.output
    payload = json.loads((tmp / "pred" / "results.json").read_text())
    assert payload["class_names"] == ["benign", "malignant", "normal"]
    assert payload["model_version"].startswith("best.pt@")
    r = payload["results"][0]
    cls = r["summary"]["class"]
    assert cls in payload["class_names"] and cls in res.output and "class" in res.output
    assert sum(r["summary"]["class_probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    meas = json.loads(Path(r["measurements"]).read_text())
    assert meas["decision"]["class"] == cls and meas["model_version"] == payload["model_version"]
    seg = pydicom.dcmread(r["seg"])
    item = seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0]
    mod = item.SegmentedPropertyTypeModifierCodeSequence[0]
    from sonoseg.outputs.seg_class_codes import CLASS_CODES

    # the phantom's class names have SNOMED CT qualifier values (sonoseg.outputs.seg_class_codes)
    assert (mod.CodeValue, mod.CodingSchemeDesignator) == (CLASS_CODES[cls].value, "SCT")
    assert "CodingSchemeIdentificationSequence" not in seg  # no local scheme used
    assert cls in seg.SegmentSequence[0].SegmentDescription
    import dciodvfy_check as dv

    if dv.available():  # conformance: no error, and no warning about the class code
        errors, warnings = dv.seg_problems(Path(r["seg"]))
        assert errors == [] and not [w for w in warnings if "Coding Scheme" in w]


@pytest.mark.slow  # int8 quantisation
def test_fast_int8_path_checks_the_class_too(trained):
    """predict's automatic int8 model (shipped calibration frames) is only used when it also names the
    same class as PyTorch on the check frames."""
    from sonoseg.runtime import fast_model

    tmp, _, run = trained
    fm = fast_model.build_fast_model(run / "best.pt", quantize=True, cache_dir=tmp / "fast", threads=1)
    recs = [json.loads(p.read_text()) for p in (tmp / "fast").rglob("int8-*.json")]  # one per scheme tried
    assert recs and all(0.0 <= r["class_agreement"] <= 1.0 and r["class_prob_max_diff"] >= 0.0 for r in recs)
    accepted = [r["scheme"] for r in recs
                if r["agreement_mean"] >= fast_model.MIN_AGREEMENT and r["agreement_worst"] >= fast_model.MIN_WORST
                and r["class_agreement"] >= fast_model.MIN_CLASS_AGREEMENT]
    assert (fm.kind == "onnx-int8") == bool(accepted) and ("same class" in fm.note)
    assert fm.kind != "onnx-int8" or fm.scheme in accepted


def test_class_names_come_from_the_data_and_the_head_is_off_without_classes():
    from sonoseg.config import load_config
    from sonoseg.data.layout import Sample
    from sonoseg.train.trainer import resolve_class_names

    def samples(classes):
        return [Sample(f"s{i}", Path(f"/x/s{i}.png"), None, c) for i, c in enumerate(classes)]

    cfg = load_config(None, ["model.name=fpn", "model.classification={}"])
    resolve_class_names(cfg, samples(["b", "a", None, "c", "a"]), log=lambda m: None)
    assert cfg.model.class_names() == ["a", "b", "c"] and cfg.model.head_spec()["classes"] == 3
    notes = []
    cfg = load_config(None, ["model.name=fpn", "model.classification={}"])
    resolve_class_names(cfg, samples([None, None]), log=notes.append)
    assert cfg.model.class_names() == [] and cfg.model.head_spec() is None and "off" in notes[0]
    cfg = load_config(None, ["model.name=fpn", "model.classification={names: [a, b]}"])
    with pytest.raises(ConfigError, match="lack the data's class"):
        resolve_class_names(cfg, samples(["a", "z"]), log=lambda m: None)


# ---------------------------------------------------------------- temperature scaling
def test_fit_temperature_recovers_the_temperature_that_made_the_labels():
    """Labels drawn from softmax(z / 2.5): the fitted T is ~2.5 (NLL minimiser, independent of how z
    was scaled), the arg-max is untouched, and ECE of the over-confident softmax(z) falls."""
    from sonoseg.evaluate.calibration import apply_temperature, fit_temperature

    rng = np.random.default_rng(0)
    z = rng.normal(scale=4.0, size=(20000, 3))
    p_true = apply_temperature(z, 2.5, are_probs=False)
    labels = np.array([rng.choice(3, p=p) for p in p_true])
    t = fit_temperature(z, labels)
    assert abs(t - 2.5) < 0.1
    raw = apply_temperature(z, 1.0, are_probs=False)
    cal = apply_temperature(raw, t)  # from probabilities: same as from logits
    np.testing.assert_allclose(cal, apply_temperature(z, t, are_probs=False), atol=1e-9)
    assert (cal.argmax(1) == raw.argmax(1)).all()
    assert expected_calibration_error(cal, labels)[0] < 0.5 * expected_calibration_error(raw, labels)[0]


def test_predictor_divides_class_logits_by_the_stored_temperature():
    from sonoseg.config import SonosegConfig
    from sonoseg.infer.predictor import Predictor

    logits = np.array([[2.0, -1.0, 0.5]], np.float32)

    class Fixed:
        def run_all(self, x):
            return np.zeros((len(x), 1) + x.shape[2:], np.float32), np.repeat(logits, len(x), 0)

    cfg = SonosegConfig.model_validate({"preprocess": {"size": [32, 32]}, "model": {"classification": {
        "names": ["benign", "malignant", "normal"], "temperature": 2.0}}})
    p = Predictor(Fixed(), cfg).predict(np.zeros((40, 50), np.uint8)).class_probabilities
    e = np.exp(logits[0] / 2.0)
    np.testing.assert_allclose(p, e / e.sum(), rtol=1e-6)
    with pytest.raises(ValueError):
        SonosegConfig.model_validate({"model": {"classification": {"temperature": 0}}})


def test_fit_temperature_script_changes_only_the_temperature(trained):
    """scripts/fit_temperature.py on evaluate's per-image CSV: the stored weights stay byte for byte, the
    temperature is the fitted one, and the model's predicted classes do not change."""
    import importlib.util

    from typer.testing import CliRunner

    from sonoseg.cli.main import app

    tmp, root, run = trained
    ev = tmp / "ev_t"
    res = CliRunner().invoke(app, ["evaluate", str(root), "--model", str(run / "best.pt"), "--split-file",
                                   str(run / "split.csv"), "--split", "val", "--out", str(ev),
                                   "--no-progress", "--n-boot", "20", "--backend", "torch"])
    assert res.exit_code == 0, res.output
    spec = importlib.util.spec_from_file_location("fit_t", Path(__file__).parents[1] / "scripts" / "fit_temperature.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main([str(run / "best.pt"), str(ev / "per_image_class.csv"), "--out", str(tmp / "t.pt")]) == 0
    a = torch.load(run / "best.pt", weights_only=False)
    b = torch.load(tmp / "t.pt", weights_only=False)
    assert all(torch.equal(a["model_state"][k], b["model_state"][k]) for k in a["model_state"])
    probs, labels, _ = mod.read_probs(ev / "per_image_class.csv")
    from sonoseg.evaluate.calibration import fit_temperature

    t = b["config"]["model"]["classification"]["temperature"]
    assert t == pytest.approx(fit_temperature(np.log(probs), labels))
    ev2 = tmp / "ev_t2"
    res = CliRunner().invoke(app, ["evaluate", str(root), "--model", str(tmp / "t.pt"), "--split-file",
                                   str(run / "split.csv"), "--split", "val", "--out", str(ev2),
                                   "--no-progress", "--n-boot", "20", "--backend", "torch"])
    assert res.exit_code == 0, res.output
    p2, l2, _ = mod.read_probs(ev2 / "per_image_class.csv")
    assert (p2.argmax(1) == probs.argmax(1)).all() and (l2 == labels).all()
    np.testing.assert_allclose(p2, mod.apply_temperature(probs, t), atol=2e-4)


def test_decision_policy_threshold_mask_or_threshold_and_suspicious():
    from sonoseg.infer.decision import DecisionPolicy

    names = ["benign", "malignant", "normal"]
    leaning_normal = np.array([0.25, 0.2, 0.55])  # arg-max says normal
    thr = DecisionPolicy("threshold", 0.7)
    d = decide(0, leaning_normal, names, "normal", thr)  # P(normal) 0.55 < 0.7: the head reports a lesion
    assert (d["lesion_found"], d["class"], d["source"]) == (True, "benign", "class head")
    d = decide(0, leaning_normal, names, "normal", DecisionPolicy("threshold", 0.5))
    assert (d["lesion_found"], d["class"]) == (False, "normal")
    # a segmented region is never overruled under mask_or_threshold, and is said to be so
    either = DecisionPolicy("mask_or_threshold", 0.5)
    d = decide(40, leaning_normal, names, "normal", either)
    assert (d["lesion_found"], d["region_is_finding"], d["source"], d["class"]) == (True, True, "mask", "benign")
    assert "favours normal" in d["note"]
    d = decide(0, leaning_normal, names, "normal", either)
    assert d["lesion_found"] is False
    # suspicious flag: P(malignant) >= threshold on a found lesion, whatever the arg-max
    susp = DecisionPolicy("argmax", None, "malignant", 0.3)
    d = decide(40, np.array([0.6, 0.35, 0.05]), names, "normal", susp)
    assert (d["class"], d["suspicious"]) == ("benign", True) and "suspicious for malignant" in d["note"]
    d = decide(40, np.array([0.7, 0.25, 0.05]), names, "normal", susp)
    assert d["suspicious"] is False
    d = decide(0, np.array([0.1, 0.35, 0.55]), names, "normal", susp)  # no lesion found: never suspicious
    assert (d["lesion_found"], d["suspicious"]) == (False, False)
    assert "suspicious" not in decide(40, np.array([0.6, 0.35, 0.05]), names, "normal")  # no threshold: no flag


def test_decision_policy_mask_rule_lets_the_mask_decide():
    from sonoseg.infer.decision import DecisionPolicy

    names = ["benign", "malignant", "normal"]
    mask_rule = DecisionPolicy("mask")
    d = decide(30, np.array([0.1, 0.2, 0.7]), names, "normal", mask_rule)
    assert (d["lesion_found"], d["class"], d["source"]) == (True, "malignant", "mask")
    d = decide(0, np.array([0.1, 0.8, 0.1]), names, "normal", mask_rule)
    assert (d["lesion_found"], d["class"]) == (False, "normal") and "review the image" in d["note"]


def test_operating_point_rules_chosen_as_written():
    """A hand-made validation set where the arg-max rule misses a lesion and a threshold does not."""
    from sonoseg.evaluate.operating_point import choose_lesion_rule, choose_suspicious
    from sonoseg.infer.decision import DecisionPolicy

    names = ["benign", "malignant", "normal"]

    def row(src, cls, pn, pm, empty):
        return {"source": src, "true_class": cls, "probs": {"benign": 1 - pn - pm, "malignant": pm, "normal": pn},
                "mask_empty": empty}

    rows = [row("a", "benign", 0.2, 0.1, False), row("a", "malignant", 0.6, 0.3, True),  # arg-max misses this one
            row("a", "normal", 0.9, 0.02, True), row("a", "normal", 0.7, 0.1, False),
            row("b", "benign", 0.1, 0.2, False), row("b", "malignant", 0.05, 0.5, False),
            row("b", "normal", 0.95, 0.01, True), row("b", "normal", 0.8, 0.05, True)]
    res = choose_lesion_rule(rows, names, "normal", max_missed=0.0)
    argmax = next(r for r in res["table"] if r["rule"] == "argmax")
    assert argmax["per_source"]["a"]["missed"] == 0.5 and not argmax["qualifies"]
    # P(normal) >= t -> no lesion: t in (0.6, 0.7] finds the 0.6 malignant and keeps normals 0.9, 0.7 | 0.95, 0.8;
    # of those equal rules the highest threshold wins
    assert res["chosen"] == {"lesion_rule": "threshold", "no_lesion_threshold": 0.7}
    assert res["chosen_row"]["normals_no_lesion"] == 4
    susp = choose_suspicious(rows, names, "normal", DecisionPolicy("threshold", 0.7), min_sensitivity=1.0)
    assert susp["threshold"] == 0.3  # the largest threshold that still flags both malignant images (0.3, 0.5)
    assert susp["per_source"]["a"]["specificity"] == 1.0 and susp["per_source"]["b"]["sensitivity"] == 1.0


def _policy_fixture(tmp_path):
    """A class-head checkpoint and an evaluate-style folder of two sources for the operating-point script."""
    import csv

    import torch

    from sonoseg.config import load_config
    from sonoseg.models import create_model_from_config
    from sonoseg.train.checkpoint import save_checkpoint

    cfg = load_config(None, ["model.name=fpn", "model.encoder=mobilenet_v2",
                             "model.classification={names: [benign, malignant, normal]}"])
    torch.manual_seed(0)
    src = save_checkpoint(tmp_path / "m.pt", config=cfg, model_state=create_model_from_config(cfg.model).state_dict())
    rows = {"a": [("a1", "benign", 0.2, 0.1, False), ("a2", "malignant", 0.6, 0.3, True), ("a3", "normal", 0.9, 0.02, True)],
            "b": [("b1", "malignant", 0.05, 0.5, False), ("b2", "normal", 0.95, 0.01, True)]}
    for s, items in rows.items():
        d = tmp_path / "ev" / s
        d.mkdir(parents=True)
        with open(d / "per_image.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["stem", "dice", "pred_empty"])
            w.writerows([(stem, 0.5, empty) for stem, *_, empty in items])
        with open(d / "per_image_class.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["stem", "true_class", "p_benign", "p_malignant", "p_normal"])
            w.writerows([(stem, c, 1 - pn - pm, pm, pn) for stem, c, pn, pm, _ in items])
    return src


def _run_choose_operating_point(*args: str) -> int:
    import runpy
    import sys

    argv = sys.argv
    sys.argv = ["choose_operating_point.py", *args]
    try:
        with pytest.raises(SystemExit) as ex:
            runpy.run_path("scripts/choose_operating_point.py", run_name="__main__")
    finally:
        sys.argv = argv
    return ex.value.code


def test_choose_operating_point_script_stores_the_policy(tmp_path):
    """scripts/choose_operating_point.py on an evaluate-style folder: policy in the copy, weights unchanged."""
    import torch

    from sonoseg.train.checkpoint import load_checkpoint

    src = _policy_fixture(tmp_path)
    assert _run_choose_operating_point(str(src), str(tmp_path / "ev"), "--out", str(tmp_path / "p.pt"),
                                       "--max-missed", "0") == 0
    out = load_checkpoint(tmp_path / "p.pt")
    torch.load(tmp_path / "p.pt", map_location="cpu", weights_only=True)  # plain floats, no numpy scalars
    head = out["config"]["model"]["classification"]
    assert head["lesion_rule"] == "threshold" and head["no_lesion_threshold"] == 0.9  # 0.95 / 0.9 normals stay
    assert head["suspicious_class"] == "malignant" and head["suspicious_threshold"] == 0.3
    before = load_checkpoint(src)
    assert all(torch.equal(before["model_state"][k], out["model_state"][k]) for k in before["model_state"])
    assert "Lesion rule: **threshold**" in (tmp_path / "ev" / "operating_point.md").read_text()


def test_choose_operating_point_no_less_cautious_than_another_model(tmp_path):
    """--no-less-cautious-than: the higher no-lesion threshold and the lower suspicious one are stored, with the
    stored policy's figures on the same images."""
    import json

    import torch

    from sonoseg.train.checkpoint import load_checkpoint

    src = _policy_fixture(tmp_path)
    other = torch.load(src, map_location="cpu", weights_only=False)
    other["config"]["model"]["classification"].update(lesion_rule="mask_or_threshold", no_lesion_threshold=0.92,
                                                      suspicious_class="malignant", suspicious_threshold=0.4)
    torch.save(other, tmp_path / "teacher.pt")
    assert _run_choose_operating_point(str(src), str(tmp_path / "ev"), "--out", str(tmp_path / "p.pt"), "--max-missed",
                                       "0", "--no-less-cautious-than", str(tmp_path / "teacher.pt")) == 0
    head = load_checkpoint(tmp_path / "p.pt")["config"]["model"]["classification"]
    # chosen here: threshold 0.9, suspicious 0.3; the teacher's: mask_or_threshold 0.92, suspicious 0.4
    assert (head["lesion_rule"], head["no_lesion_threshold"]) == ("mask_or_threshold", 0.92)
    assert (head["suspicious_class"], head["suspicious_threshold"]) == ("malignant", 0.3)
    md = (tmp_path / "ev" / "operating_point.md").read_text()
    # under the stored policy source b's normal (P 0.95, empty mask) is still "no lesion"; source a's (P 0.9) is not
    assert "| a | 0.0% | 0.0% | 100.0% |" in md and "| b | 0.0% | 100.0% | 100.0% |" in md
    assert json.loads((tmp_path / "ev" / "operating_point.json").read_text())["stored"]["no_lesion_threshold"] == 0.92


def test_more_cautious_says_no_lesion_only_where_both_do():
    """more_cautious against decide() itself, on random probabilities and masks, for every pair of candidate
    policies it can combine; and the pairs it refuses."""
    from sonoseg.evaluate.operating_point import candidates, more_cautious
    from sonoseg.infer.decision import DecisionPolicy, decide

    names = ["benign", "malignant", "normal"]
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([0.5, 0.5, 0.5], size=200)
    empty = rng.random(200) < 0.5
    pols = candidates(0.1)

    def found(p):
        return [decide(0 if e else 1, pr, names, "normal", p)["lesion_found"] for pr, e in zip(probs, empty)]

    refused = 0
    for a in pols:
        for b in pols[::3]:
            try:
                m = more_cautious(a, b)
            except ValueError:
                refused += 1
                assert "argmax" in (a.lesion_rule, b.lesion_rule)
                continue
            assert found(m) == [x or y for x, y in zip(found(a), found(b))], (a, b, m)
    assert refused  # arg-max beside a threshold < 0.5 or beside the mask rule
    s = more_cautious(DecisionPolicy("threshold", 0.9, "malignant", 0.3),
                      DecisionPolicy("mask", None, "malignant", 0.17))
    assert s == DecisionPolicy("mask_or_threshold", 0.9, "malignant", 0.17)
    assert more_cautious(DecisionPolicy("argmax"), DecisionPolicy("threshold", 0.95, "malignant", 0.2)) == \
        DecisionPolicy("threshold", 0.95, "malignant", 0.2)
    with pytest.raises(ValueError, match="suspicious classes differ"):
        more_cautious(DecisionPolicy("mask", None, "malignant", 0.2), DecisionPolicy("mask", None, "benign", 0.2))


def test_suspicious_flag_rates_per_source_match_decide():
    """The chooser's per-source table and policy_rates (the same numbers for a stored policy) against decide()'s own
    `suspicious` verdict per image, on random probabilities, masks and classes of two sources."""
    from sonoseg.evaluate.operating_point import choose_suspicious, policy_rates
    from sonoseg.infer.decision import DecisionPolicy, decide

    names = ["benign", "malignant", "normal"]
    rng = np.random.default_rng(3)
    rows = [{"source": src, "true_class": names[int(rng.integers(3))], "mask_empty": bool(rng.random() < 0.3),
             "probs": dict(zip(names, rng.dirichlet([0.7, 0.7, 0.7])))} for src in ("a", "b") for _ in range(150)]
    lesion_rule = DecisionPolicy("threshold", 0.6)
    susp = choose_suspicious(rows, names, "normal", lesion_rule, min_sensitivity=0.6)
    assert susp["threshold"] == pytest.approx(0.18)  # the P(no lesion) < 0.6 rule finds too few malignant images for 0.8
    policy = DecisionPolicy("threshold", 0.6, "malignant", susp["threshold"])
    applied = policy_rates(rows, names, "normal", policy)
    for src in ("a", "b"):
        sub = [r for r in rows if r["source"] == src]
        flag = np.array([decide(0 if r["mask_empty"] else 1, np.array([r["probs"][n] for n in names]), names, "normal",
                                policy)["suspicious"] for r in sub])
        cls = np.array([r["true_class"] for r in sub])
        want = {"n_malignant": int((cls == "malignant").sum()), "sensitivity": flag[cls == "malignant"].mean(),
                "specificity": 1 - flag[cls != "malignant"].mean(), "specificity_benign": 1 - flag[cls == "benign"].mean()}
        for got in (susp["per_source"][src], applied[src]):
            assert {k: got[k] for k in want} == pytest.approx(want), src
    assert 0 < want["specificity"] < 1 and 0 < want["sensitivity"] < 1  # the figures are not trivial
