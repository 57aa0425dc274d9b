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
