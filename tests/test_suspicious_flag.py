"""Issue 22 item 4: the malignancy operating point ("suspicious") travels from the decision into the
results summary and the API's result view, and is withheld with the rest of the finding out of scope."""

from __future__ import annotations

import datetime as dt

import pytest

pytest.importorskip("fastapi")


def _result(summary: dict, in_scope=True):
    from sonoseg.store.models import Result

    return Result(id=7, job_id="j", created_at=dt.datetime(2026, 12, 7, tzinfo=dt.timezone.utc), model_name="m",
                  model_version="v", model_sha256="0" * 64, label="benign", probabilities={"benign": 0.7},
                  kind="image", frames=1, unit="mm", max_area=1.0, max_diameter=1.0, summary=summary,
                  artefacts=[], in_scope=in_scope, scope_reason=None if in_scope else "not breast")


def _summary(suspicious: bool, domain=None) -> dict:
    from sonoseg.infer import scope
    from sonoseg.infer.run import _decision_summary

    decision = {"class": "benign", "class_probabilities": {"benign": 0.7, "malignant": 0.21, "normal": 0.09},
                "found": True, "structure": "lesion", "source": "both", "lesion_found": True,
                "suspicious": suspicious, "suspicious_threshold": {"class": "malignant", "threshold": 0.16}}
    return scope.present({"max_area": 1.0, **_decision_summary(decision)}, domain)


def test_api_result_says_suspicious_beside_a_benign_argmax():
    from sonoseg.serve.views import result_view

    view = result_view(_result(_summary(True)))
    assert view["label"] == "benign" and view["suspicious"] is True
    assert view["summary"]["suspicious_threshold"] == {"class": "malignant", "threshold": 0.16}
    assert result_view(_result(_summary(False)))["suspicious"] is False
    assert result_view(_result({"max_area": 1.0}))["suspicious"] is None  # a model without an operating point


def test_out_of_scope_withholds_the_flag_like_the_class():
    from sonoseg.serve.views import result_view

    domain = {"score": 0.1, "in_scope": False, "reason": "not breast", "threshold": 0.5}
    s = _summary(True, domain)
    assert s["suspicious"] is None and s["withheld"]["suspicious"] is True
    view = result_view(_result(s, in_scope=False), raw=True)
    assert view["suspicious"] is None and view["withheld"]["suspicious"] is True
