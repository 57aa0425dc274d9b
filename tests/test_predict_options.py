"""The predict job's options object (issue 23): one typed place for defaults and checks, entry points
with few parameters, the previous release's keywords still working (with a DeprecationWarning), and
the results listing's query parameters as one model with the API unchanged."""

from __future__ import annotations

import inspect
import json
import warnings

import pytest

from sonoseg.errors import ConfigError
from sonoseg.infer.options import ModelOptions, PredictOptions


@pytest.mark.parametrize("bad, words", [
    (dict(threshold=1.5), "threshold must be between 0 and 1"),
    (dict(min_size=-1), "min_size must be 0 or more"),
    (dict(tta=("h", "x")), "tta takes the flips h and v, not 'x'"),
    (dict(batch_size=0), "batch_size must be 1 or more"),
    (dict(temporal_window=0), "temporal_window must be 1 or more"),
    (dict(contour="middle"), "contour must be one of edge, centre"),
    (dict(spacing="0.1,abc"), "spacing '0.1,abc'"),
])
def test_bad_values_are_refused_in_one_line(bad, words):
    with pytest.raises(ConfigError) as ex:
        PredictOptions(**bad)
    assert words in str(ex.value) and "\n" not in str(ex.value)


def test_values_are_normalised():
    o = PredictOptions(model="m.pt", tta=["h"], spacing="0.2")
    assert o.model.name == "m.pt" and o.tta == ("h",) and o.spacing == (0.2, 0.2)
    assert PredictOptions(contour="centre", biometry=False).measure == {"contour": "centre", "biometry": False}
    assert isinstance(PredictOptions(), ModelOptions)  # a PredictOptions is what Predictor.from_path takes


def test_entry_points_take_few_parameters():
    from sonoseg.infer.predictor import Predictor
    from sonoseg.infer.run import predict_inputs
    from sonoseg.serve.routers.results import list_results

    for fn, most in ((predict_inputs, 8), (Predictor.from_path, 4), (list_results, 8)):
        assert len(inspect.signature(fn).parameters) <= most, fn.__qualname__


def test_previous_keywords_still_work_with_a_warning(tiny_model, tmp_path):
    from sonoseg.infer.run import predict_inputs

    src = tmp_path / "a.png"
    import cv2
    import numpy as np

    cv2.imwrite(str(src), (np.arange(40 * 50) % 251).reshape(40, 50).astype(np.uint8))
    with pytest.warns(DeprecationWarning, match=r"predict_inputs\(model=, threads=, threshold=, domain=\)"):
        old = predict_inputs([src], tmp_path / "old", tiny_model, threads=1, threshold=0.3, domain=False,
                             show_progress=False, log=lambda m: None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        new = predict_inputs([src], tmp_path / "new", PredictOptions(model=tiny_model, threads=1, threshold=0.3,
                                                                     domain=False), log=lambda m: None)
    assert old["threshold"] == new["threshold"] == 0.3 and old["domain_check"] is new["domain_check"] is False
    assert (json.loads((tmp_path / "old" / "a.measurements.json").read_text())["frames"]
            == json.loads((tmp_path / "new" / "a.measurements.json").read_text())["frames"])
    with pytest.raises(TypeError, match="unexpected keyword argument 'thresold'"):
        predict_inputs([src], tmp_path / "typo", PredictOptions(model=tiny_model), thresold=0.3)


def test_from_path_takes_the_options_and_the_previous_keywords(tiny_model):
    from sonoseg.infer.predictor import Predictor

    p = Predictor.from_path(tiny_model, ModelOptions(backend="torch", threads=1, threshold=0.2, min_size=7, tta=()))
    assert (p.backend.kind, p.threshold, p.post.min_size, p.tta) == ("torch", 0.2, 7, ())
    with pytest.warns(DeprecationWarning, match=r"Predictor.from_path\(backend=, threads=, threshold=\)"):
        q = Predictor.from_path(tiny_model, backend="torch", threads=1, threshold=0.2)
    assert (q.backend.kind, q.threshold) == ("torch", 0.2)


def test_results_listing_keeps_its_query_names_and_limits():
    from fastapi import FastAPI

    from sonoseg.serve.routers.results import router

    app = FastAPI()
    app.include_router(router)
    params = {p["name"]: p for p in app.openapi()["paths"]["/results"]["get"]["parameters"]}
    assert list(params) == ["label", "model", "since", "until", "min_diameter", "max_diameter", "min_area", "max_area",
                            "offset", "limit"]
    assert all(p["in"] == "query" and not p.get("required") for p in params.values())
    assert params["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 500, "default": 50,
                                         "title": "Limit"}


@pytest.fixture(scope="module")
def lesion_model(tmp_path_factory):
    """An untrained lesion model whose stored operating point never flags (P(malignant) >= 1.0) and whose
    head always finds a lesion (P(normal) < 1.0): only an override can raise the suspicious flag."""
    import torch

    from sonoseg.config import load_config
    from sonoseg.models import create_model_from_config
    from sonoseg.models.checkpoint import save_checkpoint

    cfg = load_config(None, ["model.name=fpn", "model.encoder=mobilenet_v2", "preprocess.size=[64, 64]",
                             "model.classification={names: [benign, malignant, normal], lesion_rule: threshold, "
                             "no_lesion_threshold: 1.0, suspicious_class: malignant, suspicious_threshold: 1.0}"])
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("lesion") / "lesion.pt", config=cfg,
                           model_state=create_model_from_config(cfg.model).state_dict())


def _png(path):
    import cv2
    import numpy as np

    cv2.imwrite(str(path), (np.arange(64 * 80) % 251).reshape(64, 80).astype(np.uint8))
    return path


def test_suspicious_threshold_overrides_the_models_operating_point(lesion_model, tiny_model, tmp_path):
    """``--suspicious-threshold`` / ``PredictOptions(suspicious_threshold=)``: the model's P(malignant)
    cut-off for one run; refused in one line for a model that names no suspicious class."""
    from typer.testing import CliRunner

    from sonoseg.cli.main import app
    from sonoseg.infer.run import predict_inputs

    src = _png(tmp_path / "a.png")
    own = predict_inputs([src], tmp_path / "own", PredictOptions(model=lesion_model, backend="torch", threads=1,
                                                                 domain=False), log=lambda m: None)
    assert own["results"][0]["summary"]["suspicious"] is False
    args = ["predict", str(src), "--model", str(lesion_model), "--backend", "torch", "--threads", "1",
            "--no-domain-check", "--no-progress"]
    res = CliRunner().invoke(app, args + ["--out", str(tmp_path / "low"), "--suspicious-threshold", "0"])
    assert res.exit_code == 0, res.output
    (r,) = json.loads((tmp_path / "low" / "results.json").read_text())["results"]
    decision = json.loads((tmp_path / "low" / "a.measurements.json").read_text())["decision"]
    assert r["summary"]["suspicious"] is True and r["summary"]["lesion_found"] is True
    assert decision["suspicious_threshold"] == {"class": "malignant", "threshold": 0.0}
    assert "suspicious for malignant" in decision["note"]
    bad = CliRunner().invoke(app, ["predict", str(src), "--model", str(tiny_model), "--out", str(tmp_path / "x"),
                                   "--backend", "torch", "--threads", "1", "--no-progress",
                                   "--suspicious-threshold", "0.5"])
    assert bad.exit_code != 0 and "names no suspicious class" in bad.output and "Traceback" not in bad.output
    with pytest.raises(ConfigError, match="suspicious_threshold must be between 0 and 1"):
        PredictOptions(suspicious_threshold=1.5)
