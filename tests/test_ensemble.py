"""Ensembles: several checkpoints -> one model whose output is the mean member probability."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sonoseg.config import SonosegConfig
from sonoseg.errors import ConfigError
from sonoseg.models import create_model_from_config
from sonoseg.train.checkpoint import load_model, save_checkpoint
from sonoseg.train.ensemble import ensemble_checkpoints


def _ckpt(path, seed, *, classes=1, base=4, size=64, name="unet"):
    params = {"base_channels": base, "depth": 2} if name == "unet" else {}
    cfg = SonosegConfig.model_validate({
        "preprocess": {"size": [size, size]},
        "model": {"name": name, "classes": classes, "params": params},
    })
    torch.manual_seed(seed)
    model = create_model_from_config(cfg.model)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval mode differs from identity
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return save_checkpoint(path, config=cfg, model_state=model.state_dict(), epoch=3, best_score=0.5)


def _probs(path, x, classes=1):
    model, _ = load_model(path)
    with torch.no_grad():
        z = model(x)
    return torch.sigmoid(z) if classes == 1 else torch.softmax(z, dim=1)


def test_binary_ensemble_is_mean_of_member_probabilities(tmp_path):
    a, b = _ckpt(tmp_path / "a.pt", 0), _ckpt(tmp_path / "b.pt", 1, base=6)  # different widths too
    ens = ensemble_checkpoints([a, b], tmp_path / "e.pt")
    x = torch.rand(2, 1, 37, 51)  # odd size: each member pads for itself
    expected = (_probs(a, x) + _probs(b, x)) / 2
    got = _probs(ens, x)
    assert got.shape == (2, 1, 37, 51)
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(_probs(a, x), _probs(b, x), atol=1e-3)  # members really differ
    model, cfg = load_model(ens)
    assert cfg.model.name == "ensemble" and len(cfg.model.params["members"]) == 2
    assert cfg.preprocess.size == (64, 64) or list(cfg.preprocess.size) == [64, 64]


def test_multiclass_ensemble_log_mean_softmax(tmp_path):
    a, b = _ckpt(tmp_path / "a.pt", 0, classes=3), _ckpt(tmp_path / "b.pt", 5, classes=3)
    ens = ensemble_checkpoints([a, b], tmp_path / "e.pt")
    x = torch.rand(1, 1, 32, 40)
    expected = (_probs(a, x, 3) + _probs(b, x, 3)) / 2
    assert torch.allclose(_probs(ens, x, 3), expected, atol=1e-5)


def test_nested_ensemble_is_flattened(tmp_path):
    a, b, c = (_ckpt(tmp_path / f"{n}.pt", s) for n, s in (("a", 0), ("b", 1), ("c", 2)))
    ab = ensemble_checkpoints([a, b], tmp_path / "ab.pt")
    abc = ensemble_checkpoints([ab, c], tmp_path / "abc.pt")
    _, cfg = load_model(abc)
    assert len(cfg.model.params["members"]) == 3
    x = torch.rand(1, 1, 32, 32)
    expected = (_probs(a, x) + _probs(b, x) + _probs(c, x)) / 3  # equal weights, not (ab + c) / 2
    assert torch.allclose(_probs(abc, x), expected, atol=1e-5)


def test_half_precision_ensemble_close_to_fp32(tmp_path):
    a, b = _ckpt(tmp_path / "a.pt", 0), _ckpt(tmp_path / "b.pt", 1)
    full = ensemble_checkpoints([a, b], tmp_path / "e32.pt")
    half = ensemble_checkpoints([a, b], tmp_path / "e16.pt", half=True)
    stored = torch.load(half, weights_only=False)["model_state"]
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    x = torch.rand(1, 1, 32, 32)
    assert torch.allclose(_probs(full, x), _probs(half, x), atol=5e-3)


def _head_ckpt(path, seed, names=("benign", "malignant", "normal")):
    cfg = SonosegConfig.model_validate({
        "preprocess": {"size": [64, 64]},
        "model": {"name": "fpn", "encoder": "resnet18", "params": {"decoder_pyramid_channels": 32,
                                                                  "decoder_segmentation_channels": 32},
                  "classification": {"names": list(names)}},
    })
    torch.manual_seed(seed)
    model = create_model_from_config(cfg.model, pretrained=False)
    return save_checkpoint(path, config=cfg, model_state=model.state_dict(), epoch=3, best_score=0.5)


def test_class_head_ensemble_averages_mask_and_class_probabilities(tmp_path):
    a, b = _head_ckpt(tmp_path / "a.pt", 0), _head_ckpt(tmp_path / "b.pt", 1)
    ens = ensemble_checkpoints([a, b], tmp_path / "e.pt")
    x = torch.rand(2, 1, 64, 64)
    outs = []
    for path in (a, b, ens):
        model, _ = load_model(path)
        model.eval()
        with torch.no_grad():
            m, c = model(x)
        outs.append((torch.sigmoid(m), torch.softmax(c, 1)))
    (ma, ca), (mb, cb), (me, ce) = outs
    assert not torch.allclose(ca, cb, atol=1e-3)  # the members really differ
    assert torch.allclose(me, (ma + mb) / 2, atol=1e-5)
    assert torch.allclose(ce, (ca + cb) / 2, atol=1e-5)
    _, cfg = load_model(ens)
    assert cfg.model.class_names() == ["benign", "malignant", "normal"]


def test_class_head_members_must_share_their_classes(tmp_path):
    a = _head_ckpt(tmp_path / "a.pt", 0)
    two = _head_ckpt(tmp_path / "b.pt", 1, names=("benign", "malignant"))
    with pytest.raises(ConfigError, match=r"b\.pt: image classes"):
        ensemble_checkpoints([a, two], tmp_path / "e.pt")
    plain = _ckpt(tmp_path / "c.pt", 2)
    with pytest.raises(ConfigError, match=r"c\.pt: image classes"):
        ensemble_checkpoints([a, plain], tmp_path / "e.pt")


def test_members_must_share_preprocessing_and_classes(tmp_path):
    a = _ckpt(tmp_path / "a.pt", 0)
    other_size = _ckpt(tmp_path / "b.pt", 1, size=96)
    with pytest.raises(ConfigError, match=r"b\.pt: preprocessing differs .*size"):
        ensemble_checkpoints([a, other_size], tmp_path / "e.pt")
    three = _ckpt(tmp_path / "c.pt", 1, classes=3)
    with pytest.raises(ConfigError, match=r"c\.pt: in_channels/classes"):
        ensemble_checkpoints([a, three], tmp_path / "e.pt")
    with pytest.raises(ConfigError, match="at least 2"):
        ensemble_checkpoints([a], tmp_path / "e.pt")
    assert not (tmp_path / "e.pt").exists()


def test_ensemble_exports_to_onnx_and_matches_torch(tmp_path):
    import onnxruntime as ort

    from sonoseg.export import export_onnx

    a, b = _ckpt(tmp_path / "a.pt", 0), _ckpt(tmp_path / "b.pt", 1)
    model, cfg = load_model(ensemble_checkpoints([a, b], tmp_path / "e.pt"))
    res = export_onnx(model, tmp_path / "e.onnx", config=cfg)
    sess = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((2, 1, 48, 40), dtype=np.float32)
    out = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.abs(out - ref).max() < 1e-3


def test_cli_ensemble_writes_and_refuses_overwrite(tmp_path):
    from typer.testing import CliRunner

    from sonoseg.cli.main import app

    a, b = _ckpt(tmp_path / "a.pt", 0), _ckpt(tmp_path / "b.pt", 1)
    out = tmp_path / "e.pt"
    res = CliRunner().invoke(app, ["ensemble", str(a), str(b), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "2 members" in " ".join(res.output.split()) and out.is_file()
    res = CliRunner().invoke(app, ["ensemble", str(a), str(b), "--out", str(out)])
    assert res.exit_code == 2 and "exists" in res.output
    res = CliRunner().invoke(app, ["ensemble", str(a), str(tmp_path / "missing.pt"), "--out", str(tmp_path / "f.pt")])
    assert res.exit_code == 2 and "missing.pt" in res.output
