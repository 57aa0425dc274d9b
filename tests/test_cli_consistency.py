"""CLI conventions: --version, one meaning per flag (--model file, --arch architecture, -c config),
deprecated spellings still work with a message, `sonoseg models`, warnings routed to the log."""

from __future__ import annotations

import json
import logging
import warnings

import pytest
from typer.testing import CliRunner

from sonoseg.cli.main import app


def test_version_flag():
    from sonoseg import __version__

    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"sonoseg {__version__}"


@pytest.mark.parametrize("verb", ["predict", "evaluate", "export", "benchmark"])
def test_model_means_a_trained_model_file(verb):
    res = CliRunner().invoke(app, [verb, "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    line = next(ln for ln in res.output.splitlines() if "--model" in ln)
    assert "rained model" in line or "heckpoint" in line
    assert "--checkpoint" not in res.output  # deprecated spelling hidden


def test_arch_and_config_flags():
    out = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output
    assert "--arch" in out and "--config" in out
    out = CliRunner().invoke(app, ["benchmark", "--help"], env={"COLUMNS": "200"}).output
    assert "--arch" in out and "--config" not in out


def test_deprecated_spellings_map_to_the_new_meaning(tmp_path):
    from sonoseg.cli._common import model_flags

    f = tmp_path / "m.pt"
    f.write_bytes(b"x")
    assert model_flags(None, None, f) == (f, None)
    assert model_flags("fpn", None, None) == (None, "fpn")  # old benchmark/train meaning of --model
    assert model_flags(str(f), None, None) == (f, None)
    assert model_flags(None, "unet", None) == (None, "unet")


def test_deprecation_message_on_the_command_line(tmp_path):
    res = CliRunner().invoke(app, ["benchmark", "--checkpoint", str(tmp_path / "none.pt"), "--backends", "torch",
                                   "--iters", "1", "--no-isolate", "--no-e2e"], env={"COLUMNS": "200"})
    assert "deprecated" in res.output and "--model" in res.output


def test_models_lists_shipped_and_architectures():
    res = CliRunner().invoke(app, ["models", "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    defaults = {m["tier"]: m for m in info["shipped"] if m["default"]}
    assert set(defaults) == {"fast", "accurate"}  # predict/export and serve/listen
    assert defaults["accurate"]["arch"] == "ensemble" and defaults["accurate"]["input"]["grid"] == [256, 256]
    assert defaults["fast"]["arch"] == "fpn" and defaults["fast"]["input"]["grid"] == [128, 128]
    v3 = next(m for m in info["shipped"] if "v3" in m["names"])  # the previous default, reachable by version
    for m in (defaults["fast"], defaults["accurate"], v3):
        assert 0.5 < m["test_dice"] < 1.0 and len(m["test_dice_ci95"]) == 2
        # every breast model classifies: its image classes and test balanced accuracy are listed
        assert m["image_classes"] == ["benign", "malignant", "normal"]
        assert 0.5 < m["test_balanced_accuracy"] < 1.0
    assert v3["version"] == "busi_default v3" and defaults["accurate"]["version"] == "breast_accurate v5"
    assert defaults["fast"]["version"] == "breast_fast v5" and not v3["default"]
    assert {"unet", "fpn", "unet_smp"} <= {a["arch"] for a in info["architectures"]}


def test_library_warnings_go_to_the_log_file_not_the_terminal(tmp_path, capsys):
    from sonoseg.cli.logging_setup import setup_logging

    log = tmp_path / "run.log"
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        setup_logging(log_file=log)
        try:
            warnings.warn("PersonName value has invalid format", UserWarning)
        finally:
            logging.captureWarnings(False)
            for h in list(logging.getLogger().handlers):
                if getattr(h, "_sonoseg_cli", False):
                    logging.getLogger().removeHandler(h)
                    h.close()
    assert "PersonName value has invalid format" in log.read_text()
    assert "PersonName" not in capsys.readouterr().err


def test_models_says_what_every_shipped_model_was_validated_on():
    """Issue 25 item 12: every shipped model (package and checkout models/) carries its validation
    record; the CT example says it was validated on the volume it was fitted to, and its 0.11."""
    res = CliRunner().invoke(app, ["models", "--json"])
    assert res.exit_code == 0, res.output
    shipped = {m["name"]: m for m in json.loads(res.output)["shipped"]}
    assert {"breast_accurate", "busi_default", "ct_organs_fit"} <= set(shipped)
    for m in shipped.values():
        v = m["validation"]
        assert v and v["validated_on"] and "validated_on_training_data" in v, m["name"]
    ct = shipped["ct_organs_fit"]
    assert ct["kind"] == "volume3d" and ct["validation"]["validated_on_training_data"] is True
    assert "0.11" in ct["validation"]["independent_test"]
    for name in ("breast_accurate", "busi_default"):
        assert shipped[name]["validation"]["validated_on_training_data"] is False
    text = CliRunner().invoke(app, ["models"], env={"COLUMNS": "300"}).output
    assert "validated on: the same volume it was fitted to" in text and "mean organ Dice 0.11" in text
