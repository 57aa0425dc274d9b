"""Bring your own task (issue 26): per-image spacing in predict/measure, a task config that layers over
the default recipe and travels in the model file, the model's own words in every output, a reference
column in evaluate, an honest console and log file."""

from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sonoseg.cli.main import app

REPO = Path(__file__).resolve().parents[1]
FETAL = REPO / "configs" / "fetal_head_biometry.yaml"


@pytest.fixture(scope="module")
def fetal_ds(tmp_path_factory) -> Path:
    from sonoseg.data.fetal_phantom import write_fetal_head_dataset

    return write_fetal_head_dataset(tmp_path_factory.mktemp("fetal") / "ds", n=12, size=(96, 128), seed=3)


def _labels(root: Path) -> dict[str, dict]:
    with open(root / "labels.csv", newline="") as fh:
        return {Path(r["image"]).stem: r for r in csv.DictReader(fh)}


# -- 1. per-image spacing in measure and predict ------------------------------------------------

def test_measure_reads_each_masks_spacing_from_the_datasets_labels_csv(fetal_ds, tmp_path):
    res = CliRunner().invoke(app, ["measure", str(fetal_ds / "masks"), "-o", str(tmp_path / "m"), "--no-progress",
                                   "-c", str(FETAL)])
    assert res.exit_code == 0, res.output
    labels = _labels(fetal_ds)
    results = json.loads((tmp_path / "m" / "results.json").read_text())["results"]
    assert len(results) == 12
    spacings = set()
    for r in results:
        stem = Path(r["input"]).stem
        s = r["summary"]
        assert s["unit"] == "mm" and s["spacing_source"] == "labels.csv"
        spacings.add(float(labels[stem]["spacing"]))
        # the phantom's masks are drawn HC18-style: within 1.5 % of the true circumference
        assert s["biometry"]["hc"] == pytest.approx(float(labels[stem]["head_circumference_mm"]), rel=0.015)
    assert spacings == {0.15, 0.3}  # two pixel sizes in one call


def test_spacing_file_and_its_errors(fetal_ds, tmp_path):
    table = tmp_path / "px.csv"
    table.write_text("file,pixel_spacing\nhead_000.png,0.5\n")
    res = CliRunner().invoke(app, ["measure", str(fetal_ds / "masks" / "head_000.png"), str(fetal_ds / "masks" / "head_001.png"),
                                   "-o", str(tmp_path / "m"), "--no-progress", "--spacing-file", str(table)])
    assert res.exit_code == 0, res.output
    by = {Path(r["input"]).stem: r["summary"] for r in json.loads((tmp_path / "m" / "results.json").read_text())["results"]}
    assert by["head_000"]["spacing_source"] == "spacing file" and by["head_000"]["unit"] == "mm"
    assert by["head_001"]["unit"] == "px"  # not in the file: its own (none), said so
    bad = tmp_path / "bad.csv"
    bad.write_text("file,comment\nhead_000.png,x\n")
    res = CliRunner().invoke(app, ["measure", str(fetal_ds / "masks"), "-o", str(tmp_path / "m2"), "--spacing-file", str(bad)])
    assert res.exit_code == 2 and "bad.csv" in res.output and "no spacing values" in res.output
    assert "Traceback" not in res.output


def test_predict_reads_per_image_spacing_for_a_folder(fetal_ds, tiny_model, tmp_path):
    res = CliRunner().invoke(app, ["predict", str(fetal_ds / "images"), "--model", str(tiny_model), "-o",
                                   str(tmp_path / "p"), "--no-progress", "--threads", "1", "--threshold", "0.01"])
    assert res.exit_code == 0, res.output
    payload = json.loads((tmp_path / "p" / "results.json").read_text())
    assert payload["n_ok"] == 12
    assert {r["summary"]["spacing_source"] for r in payload["results"]} == {"labels.csv"}
    assert "none (sizes in px)" not in res.output
    m = json.loads((tmp_path / "p" / "head_001.measurements.json").read_text())
    assert m["pixel_spacing_mm"] == [0.3, 0.3] and m["unit"] == "mm"


# -- 2. a task config layers over the default recipe --------------------------------------------

def test_task_config_layers_over_the_default_recipe():
    from sonoseg.config import load_config
    from sonoseg.models import default_recipe
    from sonoseg.train.recipe import banner, choose_base

    base, kind = choose_base(FETAL, ["train.epochs=15"], volumes=False, resume=None)
    cfg = load_config(FETAL, ["train.epochs=15"], base=base)
    recipe = default_recipe()
    assert kind == "task"
    assert (cfg.model.name, cfg.model.encoder) == (recipe["model"]["name"], recipe["model"]["encoder"])
    assert cfg.train.epochs == 15 and cfg.train.optimizer == recipe["train"]["optimizer"]
    assert cfg.measure.biometry and cfg.postprocess.ellipse_fit and cfg.measure.names == {1: "fetal head"}
    line = banner(kind, cfg, FETAL)
    assert "15 epochs" in line and "measure" in line
    full, kind = choose_base(REPO / "configs" / "busi_v3.yaml", [], volumes=False, resume=None)
    assert full is None and kind == ""  # a config with a model section is a recipe of its own


def test_train_banner_states_the_epochs_given(fetal_ds, tmp_path):
    # a missing split file stops the run right after the banner: no training needed to read it
    res = CliRunner().invoke(app, ["train", str(fetal_ds), "--epochs", "15", "--split-file", str(tmp_path / "none.csv"),
                                   "--out", str(tmp_path / "runs"), "--no-progress"])
    assert "default model's recipe" in res.output and "15 epochs" in res.output, res.output
    assert "25 epochs" not in res.output
    assert res.exit_code == 2 and "none.csv" in res.output


# -- 3. which contour: the benchmark's evidence ---------------------------------------------------

def test_contour_benchmark_picks_the_convention_of_each_mask_kind():
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import contour
    finally:
        sys.path.remove(str(REPO / "bench"))
    rows = contour.run(6, [0.1, 0.25], shape=(270, 400))
    assert contour.verdict(rows) == {"drawn": "centre", "centre-inside": "edge"}
    # the fetal config's setting (drawn masks, centre, ellipse fit on) is within 0.2 % at both pixel sizes
    for r in rows:
        if r["mask"] == "drawn" and r["contour"] == "centre" and r["ellipse_fit"]:
            assert abs(r["bias_percent"]) < 0.2, r
    from sonoseg.config import load_config

    assert load_config(FETAL).measure.contour == "centre"


# -- 4. the model's words -------------------------------------------------------------------------

def test_decision_and_names_speak_of_what_the_model_segments():
    from sonoseg.config import load_config
    from sonoseg.infer.decision import decide
    from sonoseg.infer.structures import structure_names
    from sonoseg.train.checkpoint import checkpoint_config, load_checkpoint
    from sonoseg.infer.default_model import default_model_path

    d = decide(120, None, (), None, structure="fetal head")
    assert d["found"] is True and d["note"] == "fetal head segmented" and "lesion_found" not in d
    assert "lesion" not in json.dumps(d)
    assert decide(0, None, (), None, structure="fetal head")["note"] == "no fetal head found"
    assert structure_names(load_config(FETAL)) == {1: "fetal head"}
    assert structure_names(load_config(None, [])) == {1: "structure"}
    shipped = checkpoint_config(load_checkpoint(default_model_path()))
    assert structure_names(shipped) == {1: "lesion"}  # the breast model says lesion (benign/malignant/normal)
    assert decide(50, None, (), None)["lesion_found"] is True  # its decisions keep their words


def test_fetal_head_model_names_its_seg_segment_and_json(tmp_path, dicom_file):
    import pydicom
    import torch
    from pydicom.sr.codedict import codes

    from sonoseg.config import load_config
    from sonoseg.infer.options import PredictOptions
    from sonoseg.infer.run import predict_inputs
    from sonoseg.models import create_model_from_config
    from sonoseg.train.checkpoint import save_checkpoint

    cfg = load_config(FETAL, ["model.name=unet", "model.params={base_channels: 4, depth: 2}", "preprocess.size=[32, 32]",
                              "postprocess.threshold=0.01"])
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "hc.pt", config=cfg, model_state=create_model_from_config(cfg.model).state_dict())
    out = predict_inputs([dicom_file("US1_UNCR.dcm")], tmp_path / "p",
                         PredictOptions(model=ckpt, threads=1, domain=False), log=lambda m: None)
    r = out["results"][0]
    assert r["ok"], r
    text = Path(r["measurements"]).read_text()
    assert "lesion" not in text
    m = json.loads(text)
    assert m["decision"]["structure"] == "fetal head" and m["decision"]["note"] in ("fetal head segmented",
                                                                                      "no fetal head found")
    assert m["chosen_frame_reason"] in ("largest fetal head", "no fetal head found")  # the overlay's caption too
    seg = pydicom.dcmread(r["seg"])
    (segment,) = seg.SegmentSequence
    assert segment.SegmentLabel == "fetal head"
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == codes.SCT.Head.value


# -- 5. reference column --------------------------------------------------------------------------

def test_reference_column_parsing_and_bad_values(tmp_path):
    from sonoseg.errors import ConfigError, InputError
    from sonoseg.evaluate.agreement import add_reference, agreement, parse_reference, read_reference

    assert parse_reference("head_circumference_mm") == ("head_circumference_mm", "hc")
    assert parse_reference("official:bpd") == ("official", "bpd")
    with pytest.raises(ConfigError):
        parse_reference("weird_column")
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("image,hc\nimages/a.png,100\nb.png,\nc.png,110\n")
    assert read_reference(csv_path, "hc") == {"a": 100.0, "c": 110.0}
    rows = [{"image": "a", "unit": "mm", "hc_pred": 102.0, "hc_gt": 101.0},
            {"image": "c", "unit": "mm", "hc_pred": 108.0, "hc_gt": 111.0}]
    keys = add_reference(rows, "hc", "hc", {"a": 100.0, "c": 110.0})
    stats = agreement(rows, keys)
    assert stats["hc vs hc"]["mean_abs_error"] == pytest.approx(2.0) and stats["hc vs hc"]["bias"] == pytest.approx(0.0)
    assert stats["hc (truth mask) vs hc"]["bias"] == pytest.approx(1.0)
    csv_path.write_text("image,hc\na.png,abc\n")
    with pytest.raises(InputError, match="labels.csv.*'abc' is not a number"):
        read_reference(csv_path, "hc")


# -- 6. honest console ----------------------------------------------------------------------------

def test_finished_load_is_not_sustained_load():
    from sonoseg.system.threads import default_threads, oversubscription_warning, sustained_load

    # the user's own job that just ended: 1-minute average 0.6, nothing of anyone else running now
    assert sustained_load(average=0.6, now=[0, 0, 0]) == 0.0
    assert oversubscription_warning(2, cpus=2, load=sustained_load(average=0.6, now=[0, 0, 0])) is None
    assert default_threads(cpus=2, load=sustained_load(average=0.6, now=[0, 0, 0])) == 2
    # another process busy all along: counted, and the warning says whose load it is
    msg = oversubscription_warning(2, cpus=2, load=sustained_load(average=1.0, now=[1, 1, 2]))
    assert msg is not None and "other processes" in msg


def test_running_others_sees_a_busy_process():
    from sonoseg.system.threads import _running_others

    if _running_others() is None:
        pytest.skip("no /proc/loadavg here")
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        deadline = time.monotonic() + 10
        seen = 0
        while time.monotonic() < deadline and not seen:
            seen = _running_others()
            time.sleep(0.05)
        assert seen >= 1
    finally:
        busy.kill()
        busy.wait()


def test_log_file_holds_our_lines_and_only_warnings_of_others(tmp_path):
    from sonoseg.cli._common import say
    from sonoseg.cli.logging_setup import setup_logging

    log = tmp_path / "run.log"
    setup_logging(log_file=log)
    try:
        logging.getLogger("PIL.PngImagePlugin").debug("STREAM b'IHDR' 16 13")
        logging.getLogger("matplotlib.font_manager").info("findfont: scoring")
        logging.getLogger("matplotlib").warning("a real problem")
        say("epoch   1/2  loss 0.5000  [green]val Dice 0.5000[/]")
        logging.getLogger("sonoseg.train").debug("our own detail")
    finally:
        setup_logging()
    text = log.read_text()
    assert "STREAM" not in text and "findfont" not in text
    assert "a real problem" in text and "our own detail" in text
    assert "epoch   1/2  loss 0.5000  val Dice 0.5000" in text


# -- the whole first day, on a synthetic fetal-head phantom ---------------------------------------

def test_fetal_head_trial_split_train_evaluate_predict(fetal_ds, tmp_path):
    """split -> train with the task config (tiny) -> evaluate against the official HC column -> predict
    a folder whose images have two pixel sizes, with nothing but the model file."""
    runner = CliRunner()
    split = tmp_path / "split.csv"
    res = runner.invoke(app, ["split", str(fetal_ds), "--out", str(split), "--seed", "0"])
    assert res.exit_code == 0, res.output
    log = tmp_path / "train.log"
    res = runner.invoke(app, [
        "--log-file", str(log), "train", str(fetal_ds), "-c", str(FETAL), "--split-file", str(split),
        "--out", str(tmp_path / "runs"), "--name", "hc", "--epochs", "2", "--batch-size", "4", "--threads", "1",
        "--no-progress", "--set", "preprocess.size=[64, 64]", "--set", f"data.cache_dir={tmp_path / 'cache'}",
    ])
    assert res.exit_code == 0, res.output
    assert "has no model section" in res.output and "2 epochs" in res.output  # the epochs that ran
    text = log.read_text()
    assert "epoch   1/2" in text and "epoch   2/2" in text
    assert not [ln for ln in text.splitlines() if " DEBUG " in ln and " sonoseg" not in ln]  # no PIL/matplotlib chatter
    model = tmp_path / "runs" / "hc" / "best.pt"
    from sonoseg.train.checkpoint import checkpoint_config, load_checkpoint

    cfg = checkpoint_config(load_checkpoint(model))
    assert cfg.measure.biometry and cfg.postprocess.ellipse_fit and cfg.measure.names == {1: "fetal head"}
    assert cfg.model.name == "fpn" and cfg.train.epochs == 2

    ev = tmp_path / "eval"
    res = runner.invoke(app, ["--quiet", "evaluate", str(fetal_ds), "--split-file", str(split), "--split", "train",
                              "--model", str(model), "--out", str(ev), "--no-progress", "--n-boot", "20", "--threads", "1",
                              "--reference-column", "head_circumference_mm"])
    assert res.exit_code == 0, res.output
    assert "dice" in res.output and "hc (truth mask) vs head_circumference_mm" in res.output  # tables despite --quiet
    agree = json.loads((ev / "measurement_agreement.json").read_text())["quantities"]
    truth = agree["hc (truth mask) vs head_circumference_mm"]
    assert truth["n"] >= 6 and truth["unit"] == "mm"
    assert truth["mean_abs_error"] < 0.01 * 100  # drawn masks measured with the config's contour: < 1 mm here
    report = (ev / "report.md").read_text()
    assert "Measurement agreement" in report and "hc vs head_circumference_mm" in report
    assert "![Bland-Altman](bland_altman.png)" in report and (ev / "bland_altman.png").is_file()
    assert "bland_altman.png" in (ev / "report.html").read_text()

    pred = tmp_path / "pred"
    res = runner.invoke(app, ["predict", str(fetal_ds / "images"), "--model", str(model), "-o", str(pred),
                              "--no-progress", "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert "pixel spacing from: labels.csv" in res.output and "HC" in res.output
    payload = json.loads((pred / "results.json").read_text())
    labels = _labels(fetal_ds)
    for r in payload["results"]:
        stem = Path(r["input"]).stem
        m = json.loads(Path(r["measurements"]).read_text())
        assert m["unit"] == "mm" and m["pixel_spacing_mm"] == [float(labels[stem]["spacing"])] * 2
        assert m["decision"]["structure"] == "fetal head" and "lesion" not in json.dumps(m)
        for s in m["frames"][0]["structures"]:
            assert s["name"] == "fetal head"
    found = [r for r in payload["results"] if r["summary"].get("biometry")]
    assert found, "the tiny model found no head at all"
    assert all(r["summary"]["biometry"]["unit"] == "mm" for r in found)
