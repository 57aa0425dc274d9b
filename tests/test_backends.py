"""Every inference backend gives the same logits (within its precision) through one interface."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from sonoseg.config import SonosegConfig

torch.set_num_threads(1)

CFG = SonosegConfig.model_validate({"preprocess": {"size": [64, 64]},
                                    "model": {"name": "unet", "params": {"base_channels": 4, "depth": 2}}})


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A real sonoseg checkpoint of a tiny classic U-Net (registry model, PadToMultiple-wrapped)."""
    from sonoseg.models import create_model_from_config
    from sonoseg.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = create_model_from_config(CFG.model).eval()
    path = save_checkpoint(tmp_path_factory.mktemp("be") / "tiny.pt", config=CFG, model_state=model.state_dict())
    return path, model


def x_batch(shape=(2, 1, 64, 64), seed=0):
    from sonoseg.data.phantom import make_phantom

    n, c, h, w = shape
    return np.stack([make_phantom((h, w), seed=seed + i).image for i in range(n)]).astype(np.float32)[:, None] / 255.0


def reference(model, x):
    with torch.inference_mode():
        return model(torch.from_numpy(x)).numpy()


def calib():
    return list(x_batch((8, 1, 64, 64), seed=100)[:, 0])


def test_torch_and_onnx_backends_agree(ckpt, tmp_path):
    from sonoseg.runtime.backends import create_backend

    path, model = ckpt
    x = x_batch()
    ref = reference(model, x)
    be = create_backend("torch", path, threads=1)
    assert be.name == "torch" and be.threads == 1 and be.config == CFG
    np.testing.assert_allclose(be.run(x), ref, atol=1e-6)
    onnx_be = create_backend("onnx", path, threads=1)  # checkpoint -> temporary ONNX
    assert onnx_be.config == CFG and onnx_be.name == "onnx"
    out = onnx_be.run(x)
    assert out.dtype == np.float32 and out.shape == ref.shape
    assert np.abs(out - ref).max() < 1e-4
    # odd size through the PadToMultiple path
    x2 = x_batch((1, 1, 52, 70), seed=5)
    assert np.abs(onnx_be.run(x2) - reference(model, x2)).max() < 1e-4
    onnx_be.close()


def test_int8_backends_close_to_fp32(ckpt):
    from sonoseg.runtime.backends import create_backend

    path, model = ckpt
    x = x_batch(seed=50)
    ref = reference(model, x)
    scale = np.abs(ref).std()
    for kind in ("onnx-int8", "onnx-int8-dynamic"):
        be = create_backend(kind, path, threads=1, calib_images=calib())
        out = be.run(x)
        assert be.name == kind and out.shape == ref.shape
        assert np.abs(out - ref).mean() < 0.1 * scale, kind
        be.close()


def test_exported_files_load_with_their_config(ckpt, tmp_path):
    from sonoseg.export import export_onnx, export_torchscript
    from sonoseg.runtime.quantize import quantize_static_int8
    from sonoseg.runtime.backends import create_backend

    path, model = ckpt
    x = x_batch(seed=9)
    ref = reference(model, x)
    export_onnx(model, tmp_path / "m.onnx", config=CFG)
    export_torchscript(model, tmp_path / "m.ts", config=CFG)
    quantize_static_int8(tmp_path / "m.onnx", tmp_path / "m.int8.onnx", calib())
    be = create_backend("onnx", tmp_path / "m.onnx", threads=2)
    assert be.threads == 2 and be.session.get_session_options().intra_op_num_threads == 2
    assert be.session.get_session_options().inter_op_num_threads == 1
    assert be.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert be.config == CFG and np.abs(be.run(x) - ref).max() < 1e-4
    ts = create_backend("torch", tmp_path / "m.ts", threads=1)
    assert ts.config == CFG and np.abs(ts.run(x) - ref).max() < 1e-5
    q = create_backend("onnx-int8", tmp_path / "m.int8.onnx", threads=1)  # already int8: used as is
    assert q.source == str(tmp_path / "m.int8.onnx") and q.config == CFG
    assert np.abs(q.run(x) - ref).mean() < 0.1 * np.abs(ref).std()


def test_onnx_pool_threads_sleep_between_runs_unless_asked(ckpt, tmp_path, monkeypatch):
    """Spinning pool threads take a two-core cart's cores from the next frame's preprocessing, so sessions
    are built without it; $SONOSEG_ORT_SPINNING=1 gives onnxruntime's default back (bench/ort_spinning.py)."""
    from sonoseg.export import export_onnx
    from sonoseg.runtime.backends import create_backend

    export_onnx(ckpt[1], tmp_path / "m.onnx", config=CFG)
    entry = "session.intra_op.allow_spinning"
    for env, want in ((None, "0"), ("0", "0"), ("1", "1"), ("yes", "0")):
        if env is None:
            monkeypatch.delenv("SONOSEG_ORT_SPINNING", raising=False)
        else:
            monkeypatch.setenv("SONOSEG_ORT_SPINNING", env)
        be = create_backend("onnx", tmp_path / "m.onnx", threads=2)
        assert be.session.get_session_options().get_session_config_entry(entry) == want, env


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("SONOSEG_TEST_COMPILE") != "1",
                    reason="inductor's first C++ compile takes 25-55 s here; set SONOSEG_TEST_COMPILE=1 to run")
def test_torch_compile_backend_or_clear_skip(ckpt):
    from sonoseg.runtime.backends import BackendUnavailable, create_backend

    path, model = ckpt
    x = x_batch((1, 1, 64, 64))
    try:
        be = create_backend("torch-compile", path, threads=1, compile_shape=x.shape)
    except BackendUnavailable as exc:
        assert "torch-compile unavailable" in str(exc)
        pytest.skip(str(exc))
    assert np.abs(be.run(x) - reference(model, x)).max() < 1e-4


def test_torch_compile_failure_becomes_backend_unavailable(ckpt, monkeypatch):
    from sonoseg.runtime.backends import BackendUnavailable, create_backend

    def broken(*a, **k):
        raise RuntimeError("Compiler: cc not found")

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.raises(BackendUnavailable, match="torch-compile unavailable.*cc not found"):
        create_backend("torch-compile", ckpt[0], threads=1)


def test_torch_backend_threads_applied_per_run(ckpt):
    from sonoseg.runtime.backends import create_backend

    before = torch.get_num_threads()
    try:
        be = create_backend("torch", ckpt[1], threads=2)
        torch.set_num_threads(1)  # another component changed the global
        be.run(x_batch((1, 1, 32, 32)))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_backend_errors(ckpt, tmp_path):
    from sonoseg.errors import ConfigError, InputError
    from sonoseg.export import export_onnx
    from sonoseg.runtime.backends import create_backend

    with pytest.raises(ConfigError, match="unknown backend"):
        create_backend("tensorrt", ckpt[0])
    with pytest.raises(InputError):
        create_backend("onnx", tmp_path / "missing.onnx")
    with pytest.raises(InputError):
        create_backend("torch", tmp_path / "missing.pt")
    export_onnx(ckpt[1], tmp_path / "bare.onnx", config=None)
    with pytest.raises(ConfigError, match="calibration images"):
        create_backend("onnx-int8", tmp_path / "bare.onnx")  # fp32 file without preprocessing config
    export_onnx(ckpt[1], tmp_path / "f.onnx", config=CFG)  # with its config: calibrated on the shipped frames
    q = create_backend("onnx-int8", tmp_path / "f.onnx", threads=1)
    assert q.kind == "onnx-int8" and q.source == str(tmp_path / "f.onnx") and q.config == CFG
    be = create_backend("onnx", tmp_path / "f.onnx")
    with pytest.raises(ConfigError):
        be.run(np.zeros((64, 64), np.float32))


def test_predictor_runs_self_contained_onnx(ckpt, tmp_path):
    """An exported .onnx alone reproduces the checkpoint's predictions in original pixels."""
    from sonoseg.data.phantom import make_phantom
    from sonoseg.export import export_onnx
    from sonoseg.infer.predictor import Predictor

    path, model = ckpt
    export_onnx(model, tmp_path / "p.onnx", config=CFG)
    frame = make_phantom((90, 120), seed=3).image
    a = Predictor.from_path(path, backend="torch", threads=1).predict(frame)
    b = Predictor.from_path(tmp_path / "p.onnx", threads=1).predict(frame)
    assert a.mask.shape == frame.shape == b.mask.shape
    assert np.abs(a.probability - b.probability).max() < 1e-4
