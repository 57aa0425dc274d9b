"""Shipped model names (issue 22): `fast` for predict and export, `accurate` for serve and listen, `v3` by
version; a file of the same name wins; each shipped tier is a real model under 25 MB. `fast` is the distilled
128x128 student (docs/breast_v4/fast128_rule.md), `accurate` the three-network ensemble (v5_rule.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sonoseg.errors import SonosegError
from sonoseg.models import shipped


def test_each_job_gets_its_tier_by_default():
    assert shipped.resolve_model(None, "predict").name == "breast_fast.pt"
    assert shipped.resolve_model(None, "export").name == "breast_fast.pt"
    assert shipped.resolve_model(None, "serve").name == "breast_accurate.pt"
    assert shipped.resolve_model(None, "listen").name == "breast_accurate.pt"
    models = shipped.assets_dir() / "models"
    for name, file in (("fast", "breast_fast.pt"), ("accurate", "breast_accurate.pt"), ("v3", "busi_default.pt")):
        assert shipped.resolve_model(name, "serve") == models / file
        assert shipped.names_of(models / file) == [name]


def test_a_file_of_the_same_name_wins_and_other_paths_pass_through(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert shipped.resolve_model("fast").parent == shipped.assets_dir() / "models"
    Path("fast").write_bytes(b"x")
    assert shipped.resolve_model("fast") == Path("fast")
    assert shipped.resolve_model(tmp_path / "m.pt") == tmp_path / "m.pt"
    assert shipped.tier_of(tmp_path / "busi_default.pt") is None  # only the shipped folder's files are tiers
    with pytest.raises(SonosegError, match="'v9' is not a shipped model name"):
        shipped.shipped_model_path("v9")
    with pytest.raises(SonosegError, match=r"v2 is not shipped in the package; .*git show f68c3e2:"):
        shipped.resolve_model("v2")  # the previous default stays reachable by version, from git


def test_shipped_tiers_are_small_and_describe_themselves():
    from sonoseg.infer.model_info import shipped_models
    from sonoseg.models.checkpoint import load_model

    rows = {n: d for d in shipped_models() for n in d["names"]}
    assert set(rows) == {"fast", "accurate", "v3"}
    assert rows["fast"]["default_for"] == ["predict", "export"] and rows["v3"]["default_for"] == []
    assert rows["accurate"]["default_for"] == ["serve", "listen"]
    assert rows["v3"]["version"] == "busi_default v3" and rows["accurate"]["version"] == "breast_accurate v5"
    for tier in ("fast", "accurate"):
        path = shipped.shipped_model_path(tier)
        assert path.stat().st_size < 25e6, f"{path.name} is {path.stat().st_size / 1e6:.1f} MB"
        model, cfg = load_model(path)
        assert cfg.model.class_names() == ["benign", "malignant", "normal"]
        assert rows[tier]["validation"] is not None and rows[tier]["domain_check"]  # record + out-of-scope stats
    _, accurate = load_model(shipped.shipped_model_path("accurate"))
    assert accurate.model.name == "ensemble" and list(accurate.postprocess.tta) == ["h"]
    head = accurate.model.classification  # its operating point, chosen on validation (v5_rule.md)
    assert (head.lesion_rule, head.no_lesion_threshold) == ("threshold", 0.85)
    assert (head.suspicious_class, head.suspicious_threshold) == ("malignant", 0.17)
    _, fast = load_model(shipped.shipped_model_path("fast"))  # the student: int8 with its own fp32 set
    assert list(fast.preprocess.size) == [128, 128] and "/model/decoder/seg_blocks.1/" in fast.model.int8_keep_float
    assert (fast.model.classification.no_lesion_threshold, fast.model.classification.suspicious_threshold) == (0.95, 0.01)


def test_accurate_tier_is_never_quantised_by_auto(tmp_path):
    """The accurate tier is validated in fp32: backend auto builds its fp32 ONNX, never an int8 one."""
    from sonoseg.runtime.backend_choice import choose_backend

    be = choose_backend("auto", shipped.shipped_model_path("accurate"), threads=1, cache_dir=tmp_path)
    assert be.kind in ("onnx", "torch")
