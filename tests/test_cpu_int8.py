"""int8 that is right on every CPU: the scheme follows the CPU's instruction set, the no-VNNI path is
exercised on every machine, the export gate checks mask agreement, and predict's default backend is
the fastest one that is correct here."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sonoseg.system.cpu import CpuInfo, parse_cpuinfo

torch.set_num_threads(1)

INTEL = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
flags\t\t: fpu sse sse2 avx avx2 fma avx512f avx512dq avx512bw avx512_vnni
"""
AMD = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse sse2 avx avx2 fma sha_ni vaes
"""


def test_cpuinfo_parsing_and_scheme_choice(monkeypatch):
    from sonoseg.runtime.quantize import SCHEME_ENV, default_scheme

    monkeypatch.delenv(SCHEME_ENV, raising=False)
    intel, amd = parse_cpuinfo(INTEL), parse_cpuinfo(AMD)
    assert intel.model.startswith("Intel") and intel.avx512 and intel.vnni and intel.avx2
    assert amd.model == "AMD EPYC 7B13" and amd.avx2 and not amd.avx512 and not amd.vnni
    assert intel.label().endswith("(AVX-512 VNNI)") and amd.label() == "AMD EPYC 7B13 (AVX2)"
    assert default_scheme(intel) == "u8s8" and default_scheme(amd) == "u8s8-reduced"
    assert parse_cpuinfo(AMD.replace("sha_ni", "avx_vnni")).vnni  # Alder Lake style AVX-VNNI counts too
    monkeypatch.setenv(SCHEME_ENV, "u8u8")
    assert default_scheme(intel) == default_scheme(amd) == "u8u8"
    monkeypatch.setenv(SCHEME_ENV, "s4s4")
    with pytest.raises(Exception, match="SONOSEG_INT8_SCHEME"):
        default_scheme(amd)


def test_scheme_warning_only_for_full_range_weights_without_vnni():
    from sonoseg.runtime.quantize import scheme_of, scheme_warning

    intel, amd = parse_cpuinfo(INTEL), parse_cpuinfo(AMD)
    old = {"mode": "static", "activation": "quint8"}  # a file written before schemes were recorded
    assert scheme_of(old) == "u8s8" and scheme_of({"mode": "static", "scheme": "u8s8-reduced"}) == "u8s8-reduced"
    assert scheme_of({"mode": "dynamic"}) is None
    assert "VNNI" in scheme_warning(old, amd) and scheme_warning(old, intel) is None
    assert scheme_warning({"mode": "static", "scheme": "u8s8-reduced"}, amd) is None


@pytest.fixture(scope="module")
def fast_cache(sonoseg_cache_dir):
    """The session's cache (conftest): the shipped model's ONNX/int8 files are built once per scheme."""
    return sonoseg_cache_dir


def test_no_vnni_scheme_agrees_with_fp32_on_real_frames(fast_cache, monkeypatch):
    """The scheme chosen for CPUs without VNNI, forced here on every machine: 7-bit weights cannot
    saturate the AVX2 kernel, and its masks agree with PyTorch's on real held-out frames (computed here
    independently of the builder's own check)."""
    from sonoseg.export import per_image_agreement, predict_masks
    from sonoseg.runtime.quantize import SCHEME_ENV, quantization_info
    from sonoseg.runtime.backends import create_backend, load_torch_model
    from sonoseg.infer.default_model import default_model_path
    from sonoseg.runtime.calibration import calibration_grids
    from sonoseg.runtime.fast_model import build_fast_model

    monkeypatch.setenv(SCHEME_ENV, "u8s8-reduced")
    fm = build_fast_model(default_model_path(), cache_dir=fast_cache)
    assert fm.scheme == "u8s8-reduced"
    int8 = fm.fp32_path.parent / "model.int8-u8s8-reduced.onnx"
    info = quantization_info(int8)
    assert info["scheme"] == "u8s8-reduced" and info["reduce_range"] is True and "vnni" in info["built_on"]
    assert info["n_calibration"] >= 64
    model, cfg = load_torch_model(default_model_path())
    calib, check = calibration_grids(cfg)
    assert len(check) >= 16 and len(calib) >= 4 * len(check) - 4
    ref = predict_masks(create_backend("torch", model, threads=1, config=cfg).run, check)
    per = per_image_agreement(ref, predict_masks(create_backend("onnx", int8, threads=1).run, check))
    assert per.mean() >= 0.97 and per.min() >= 0.6, np.sort(per)[:5]
    assert per.mean() == pytest.approx(fm.agreement_mean, abs=1e-9)


def test_per_image_agreement_values():
    from sonoseg.export import per_image_agreement

    a = np.zeros((20, 20), np.uint8)
    a[5:15, 5:15] = 1  # 100 px
    b = np.zeros_like(a)
    b[5:15, 5:10] = 1  # 50 px, all inside a
    tiny = np.zeros_like(a)
    tiny[0, 0] = 1
    got = per_image_agreement([a, a, tiny, np.zeros_like(a), a], [a, b, np.zeros_like(a), np.zeros_like(a), tiny],
                              min_area=10)
    np.testing.assert_allclose(got, [1.0, 2 * 50 / 150, 1.0, 1.0, 0.0])


def test_export_gate_refuses_on_mask_agreement(tmp_path):
    """Dice change within tolerance but agreement below the bar: refused, not written, reason given."""
    from test_export import LesionNet, cfg64, phantom_pairs

    from sonoseg.export import ExportOptions, ExportRefused, export_model

    pairs = phantom_pairs(8, seed=200)
    calib = [p[0] for p in phantom_pairs(8, seed=300)]
    with pytest.raises(ExportRefused, match="agree with PyTorch's at mean Dice") as info:
        export_model(LesionNet().eval(), ExportOptions(out_dir=tmp_path / "o", formats=["onnx", "onnx-int8"],
                                                       tolerance=1.0, min_agreement=1.01),
                     calib_images=calib, val_pairs=pairs, config=cfg64())
    rep = info.value.report
    assert "onnx-int8" in rep.refused and "onnx" in rep.refused  # both below an impossible bar
    assert not (tmp_path / "o" / "model.int8.onnx").exists()
    assert 0.9 <= rep.agreement_mean["onnx"] <= 1.0 and rep.agreement_worst["onnx-int8"] <= rep.agreement_mean["onnx-int8"]
    saved = json.loads((tmp_path / "o" / "export_report.json").read_text())
    assert saved["agreement_mean"]["onnx-int8"] == pytest.approx(rep.agreement_mean["onnx-int8"])
    ok = export_model(LesionNet().eval(), ExportOptions(out_dir=tmp_path / "p", formats=["onnx", "onnx-int8"],
                                                        tolerance=0.03, min_agreement=0.9),  # borderline masks (test_export)
                      calib_images=calib, val_pairs=pairs, config=cfg64())
    assert set(ok.files) == {"onnx", "onnx-int8"} and ok.agreement_mean["onnx-int8"] >= ok.min_agreement


def test_default_backend_is_fast_and_cached(fast_cache, monkeypatch):
    """Shipped model: int8 when its masks agree with PyTorch's on this CPU, else fp32 ONNX; built once
    and reused; the chosen backend finds what eager PyTorch finds."""
    from sonoseg.runtime import fast_model
    from sonoseg.runtime.calibration import calibration_frames
    from sonoseg.infer.predictor import Predictor

    monkeypatch.setenv("SONOSEG_CACHE_DIR", str(fast_cache))
    notes = []
    p = Predictor.from_path(None, threads=1, log=notes.append)
    assert p.backend.kind in ("onnx-int8", "onnx") and p.backend.threads == 1 and p.backend.note
    from sonoseg.runtime.quantize import default_scheme

    rec = json.loads(next(fast_cache.glob(f"models/*/int8-{default_scheme()}-*.json")).read_text())
    accepted = rec["agreement_mean"] >= fast_model.MIN_AGREEMENT and rec["agreement_worst"] >= fast_model.MIN_WORST
    assert accepted == (p.backend.kind == "onnx-int8")
    notes.clear()
    again = Predictor.from_path(None, threads=1, log=notes.append)
    assert again.backend.kind == p.backend.kind and not any("building" in n for n in notes)
    frame = calibration_frames()[4]  # a check frame
    torch_p = Predictor.from_path(None, backend="torch", threads=1)
    a, b = again.predict(frame).mask, torch_p.predict(frame).mask
    inter, tot = int(((a > 0) & (b > 0)).sum()), int((a > 0).sum() + (b > 0).sum())
    assert tot == 0 or 2 * inter / tot > 0.9
    # the same cached figures under a bar they do not reach: fp32 ONNX, nothing rebuilt (scheme pinned,
    # so the u8u8 fallback is not tried; test_fast_path_falls_back_to_u8u8 covers it)
    monkeypatch.setenv("SONOSEG_INT8_SCHEME", default_scheme())
    monkeypatch.setattr(fast_model, "MIN_AGREEMENT", 1.01)
    notes.clear()
    strict = Predictor.from_path(None, threads=1, log=notes.append)
    assert strict.backend.kind == "onnx" and "below" in strict.backend.note
    assert not any("building" in n for n in notes)


def test_user_checkpoint_gets_fp32_onnx_and_torchscript_stays_torch(tmp_path, monkeypatch):
    from test_backends import CFG

    from sonoseg.export import export_torchscript
    from sonoseg.infer.predictor import Predictor
    from sonoseg.models import create_model_from_config
    from sonoseg.train.checkpoint import save_checkpoint

    monkeypatch.setenv("SONOSEG_CACHE_DIR", str(tmp_path / "cache"))
    torch.manual_seed(0)
    model = create_model_from_config(CFG.model).eval()
    ck = save_checkpoint(tmp_path / "tiny.pt", config=CFG, model_state=model.state_dict())
    p = Predictor.from_path(ck, threads=1)
    assert p.backend.kind == "onnx" and p.backend.source == str(ck) and p.config == CFG
    export_torchscript(model, tmp_path / "m.ts", config=CFG)
    assert Predictor.from_path(tmp_path / "m.ts", threads=1).backend.kind == "torch"


def test_backend_errors_name_the_users_file(tmp_path, monkeypatch):
    """An on-the-fly quantisation failure names the checkpoint the user gave, not a temporary file."""
    from test_backends import CFG

    from sonoseg.errors import SonosegError
    from sonoseg.runtime import quantize
    from sonoseg.runtime.onnx_export import ExportError
    from sonoseg.runtime.backends import create_backend
    from sonoseg.models import create_model_from_config
    from sonoseg.train.checkpoint import save_checkpoint

    ck = save_checkpoint(tmp_path / "mine.pt", config=CFG, model_state=create_model_from_config(CFG.model).state_dict())

    def broken(fp32, out, *a, **k):
        raise ExportError(f"{fp32}: static int8 quantisation failed (RuntimeError: boom)")

    monkeypatch.setattr(quantize, "quantize_static_int8", broken)
    with pytest.raises(SonosegError) as info:
        create_backend("onnx-int8", ck, threads=1)
    msg = str(info.value)
    assert msg.startswith(str(ck)) and "boom" in msg and "sonoseg-be-" not in msg


def test_threads_default_and_oversubscription(monkeypatch):
    from sonoseg.errors import ConfigError
    from sonoseg.system import threads as th

    monkeypatch.delenv(th.ENV, raising=False)
    assert th.available_cpus() >= 1
    assert th.default_threads(cpus=4, load=0.2) == 4
    assert th.default_threads(cpus=4, load=2.6) == 1  # 4 cores, 3 kept busy by other work
    assert th.default_threads(cpus=2, load=5.0) == 1
    monkeypatch.setenv(th.ENV, "3")
    assert th.default_threads(cpus=2, load=5.0) == 3 and th.resolve_threads(None) == 3
    monkeypatch.setenv(th.ENV, "many")
    with pytest.raises(ConfigError, match="SONOSEG_THREADS"):
        th.default_threads()
    assert "slower" in th.oversubscription_warning(2, cpus=2, load=1.5)
    assert th.oversubscription_warning(2, cpus=2, load=0.1) is None
    assert th.oversubscription_warning(1, cpus=1, load=9.0) is None  # one thread never oversubscribes
    with pytest.raises(ConfigError):
        th.resolve_threads(0)


def test_cgroup_quota_caps_available_cpus(monkeypatch):
    from sonoseg.system import threads as th

    monkeypatch.setattr(th, "_cgroup_quota", lambda: 1.5)
    monkeypatch.setattr(th.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert th.available_cpus() == 1
    monkeypatch.setattr(th, "_cgroup_quota", lambda: None)
    assert th.available_cpus() == 4


def test_train_without_config_uses_the_shipped_recipe_and_writes_small_checkpoints(tmp_path):
    from typer.testing import CliRunner

    from sonoseg.cli.main import app
    from sonoseg.data.phantom import write_phantom_dataset
    from sonoseg.models import default_recipe

    recipe = default_recipe()
    ds = write_phantom_dataset(tmp_path / "ds", n=16, size=(64, 64), seed=3)
    res = CliRunner().invoke(app, [
        "train", str(ds), "--out", str(tmp_path / "runs"), "--name", "r", "--epochs", "1", "--no-progress",
        "--set", "preprocess.size=[64, 64]", "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "train.threads=1"])
    assert res.exit_code == 0, res.output
    assert "shipped default model's recipe" in res.output
    # the recipe, not the trained model: no version, no int8 layer choice, class names from the user's data
    assert "version" not in recipe["model"] and "int8_keep_float" not in recipe["model"]
    assert "names" not in recipe["model"].get("classification", {})
    best = torch.load(tmp_path / "runs" / "r" / "best.pt", weights_only=False)
    assert best["config"]["model"]["name"] == recipe["model"]["name"] == "fpn"
    assert best["config"]["model"]["encoder"] == recipe["model"]["encoder"]
    assert "optimizer_state" not in best  # best.pt is for inference: no optimiser state
    assert (tmp_path / "runs" / "r" / "best.pt").stat().st_size < 15e6
    assert "optimizer_state" in torch.load(tmp_path / "runs" / "r" / "last.pt", weights_only=False)


def test_benchmark_machine_info_names_cpu_and_isa():
    from sonoseg.bench.benchmark import machine_info
    from sonoseg.system import cpu_info

    info = machine_info()
    cpu = cpu_info()
    assert info["cpu"] == cpu.model and info["vnni"] == cpu.vnni and info["avx2"] == cpu.avx2
    assert info["int8_scheme"] in ("u8s8", "u8s8-reduced", "u8u8") and info["available_cpus"] >= 1
    assert isinstance(CpuInfo("x", "x86_64").summary()["vnni"], bool)


def test_fast_path_falls_back_to_u8u8_when_the_default_scheme_fails(tmp_path, monkeypatch):
    """Where the CPU's default scheme fails the agreement check, u8u8 is tried next and used if it
    passes; a pinned scheme ($SONOSEG_INT8_SCHEME) is the only one tried."""
    from sonoseg.runtime import fast_model

    monkeypatch.delenv("SONOSEG_INT8_SCHEME", raising=False)
    monkeypatch.setattr("sonoseg.runtime.quantize.default_scheme", lambda cpu=None: "u8s8-reduced")
    assert fast_model.int8_schemes_to_try() == ["u8s8-reduced", "u8u8"]
    fp32 = tmp_path / "model.onnx"
    fp32.write_bytes(b"x")  # build_fast_model only needs it to exist here
    tried = []

    def fake_record(folder, fp32_path, load, scheme, threads, log):
        tried.append(scheme)
        ok = scheme == "u8u8"
        return ({"scheme": scheme, "agreement_mean": 0.99 if ok else 0.95, "agreement_worst": 0.8 if ok else 0.0,
                 "n_check": 20}, tmp_path / f"model.int8-{scheme}.onnx")

    monkeypatch.setattr(fast_model, "_int8_record", fake_record)
    monkeypatch.setattr(fast_model, "cache_folder", lambda ck, cd=None: tmp_path)
    fm = fast_model.build_fast_model(tmp_path / "ck.pt")
    assert tried == ["u8s8-reduced", "u8u8"] and fm.kind == "onnx-int8" and fm.scheme == "u8u8"
    assert "default scheme u8s8-reduced failed" in fm.note
    tried.clear()
    monkeypatch.setenv("SONOSEG_INT8_SCHEME", "u8s8-reduced")
    assert fast_model.int8_schemes_to_try() == ["u8s8-reduced"]
    fm = fast_model.build_fast_model(tmp_path / "ck.pt")
    assert tried == ["u8s8-reduced"] and fm.kind == "onnx" and fm.scheme == "u8s8-reduced" and "below" in fm.note
