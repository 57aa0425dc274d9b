"""Entry points take (inputs, options) (issue 23, item 1): evaluate_model, export_model, export_onnx and
train take a typed options object that holds the defaults and checks bad values before any work; the
old keywords still work this release with a DeprecationWarning."""

from __future__ import annotations

import inspect
import warnings

import pytest
from typer.testing import CliRunner

from sonoseg.errors import ConfigError


def test_entry_points_take_at_most_eight_parameters():
    from sonoseg.evaluate.run import evaluate_model
    from sonoseg.export import export_model, export_onnx
    from sonoseg.train.trainer import train

    for fn in (evaluate_model, export_model, export_onnx, train):
        assert len(inspect.signature(fn).parameters) <= 8, fn.__name__


def test_options_check_their_values():
    from sonoseg.evaluate.options import EvaluateOptions
    from sonoseg.export import ExportError, ExportOptions, OnnxOptions
    from sonoseg.train.options import RunOptions

    bad = [lambda: EvaluateOptions(distance_units="cm"), lambda: EvaluateOptions(n_boot=-1),
           lambda: EvaluateOptions(reference="head_circumference_mm"),
           lambda: ExportOptions(out_dir="x", formats=("onnx", "tflite")), lambda: ExportOptions(out_dir="x", formats=()),
           lambda: ExportOptions(out_dir="x", scheme="u9s9"), lambda: ExportOptions(out_dir="x", calibrate_method="max"),
           lambda: ExportOptions(out_dir="x", stem="a/b"),
           lambda: RunOptions(folds=(1, 0)), lambda: RunOptions(folds=(5, 5)), lambda: RunOptions(epochs=0),
           lambda: RunOptions(time_limit_s=0)]
    for make in bad:
        with pytest.raises(ConfigError):
            make()
    for make in (lambda: OnnxOptions(opset=13), lambda: OnnxOptions(exporter="nope"),
                 lambda: ExportOptions(out_dir="x", exporter="nope")):
        with pytest.raises(ExportError):
            make()
    assert ExportOptions(out_dir="x", formats=["onnx", "torchscript", "onnx"]).formats == ("onnx", "torchscript")
    assert EvaluateOptions().out_dir == "eval" and RunOptions().out == "runs"


def test_old_keywords_map_onto_the_options():
    from sonoseg._compat.legacy_kwargs import options_with_legacy
    from sonoseg.evaluate.options import EvaluateOptions
    from sonoseg.export import ExportOptions

    with pytest.warns(DeprecationWarning, match=r"EvaluateOptions\(n_boot="):
        o = options_with_legacy(EvaluateOptions, None, {"n_boot": 7, "show_progress": True}, "evaluate_model",
                                ignored=("show_progress",))
    assert o.n_boot == 7 and o.split == "test"
    with pytest.warns(DeprecationWarning):  # old positional out_dir, keywords over given options
        o = options_with_legacy(ExportOptions, "out", {"tolerance": 0.5}, "export_model", positional="out_dir")
    assert o.out_dir == "out" and o.tolerance == 0.5
    with pytest.raises(TypeError, match="unexpected keyword argument 'nboot'"):
        options_with_legacy(EvaluateOptions, None, {"nboot": 7}, "evaluate_model")
    with pytest.raises(TypeError, match="must be EvaluateOptions, not dict"):
        options_with_legacy(EvaluateOptions, {"n_boot": 7}, {}, "evaluate_model")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new spelling warns about nothing
        given = EvaluateOptions(n_boot=3)
        assert options_with_legacy(EvaluateOptions, given, {}, "evaluate_model") is given


def test_evaluate_old_keywords_give_the_same_result(tiny_model, tmp_path):
    from test_faults_misc import _dataset

    from sonoseg.evaluate.options import EvaluateOptions
    from sonoseg.evaluate.run import evaluate_model

    root = _dataset(tmp_path)
    new = evaluate_model(root, EvaluateOptions(model=tiny_model, out_dir=tmp_path / "a", n_boot=10, report=False),
                         log=lambda m: None)
    with pytest.warns(DeprecationWarning, match="evaluate_model"):
        old = evaluate_model(root, model=tiny_model, out_dir=tmp_path / "b", n_boot=10, report=False,
                             log=lambda m: None, show_progress=False)
    assert old.aggregate["dice"] == new.aggregate["dice"]
    assert (tmp_path / "b" / "metrics.json").is_file()


def test_evaluate_cli_bad_units_is_one_line_before_any_work(tiny_model, tmp_path):
    from test_faults_misc import _dataset

    from sonoseg.cli.main import app

    out = tmp_path / "ev"
    res = CliRunner().invoke(app, ["evaluate", str(_dataset(tmp_path)), "--model", str(tiny_model), "--units", "cm",
                                   "--out", str(out), "--no-progress"])
    assert res.exit_code == 2, res.output
    assert "'cm'" in res.output and "Traceback" not in res.output
    assert not out.exists()


def test_export_cli_bad_scheme_fails_before_exporting(tiny_model, tmp_path):
    from sonoseg.cli.main import app

    out = tmp_path / "ex"
    res = CliRunner().invoke(app, ["export", "--model", str(tiny_model), "--scheme", "u9s9", "--out", str(out),
                                   "--threads", "1"])
    assert res.exit_code == 2, res.output
    assert "u9s9" in res.output and "Traceback" not in res.output
    assert not out.exists()  # nothing exported, no folder made
