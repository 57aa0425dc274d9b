"""Benchmark rows: required keys, self-consistent numbers, e2e rows, isolation, JSON from the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sonoseg.config import SonosegConfig

torch.set_num_threads(1)

REQUIRED = {"backend", "threads", "batch", "median_ms", "p95_ms", "fps", "peak_rss_mb", "model", "mode"}


@pytest.fixture(scope="module")
def tiny():
    from sonoseg.bench.benchmark import registry_model

    return registry_model("unet", size=(64, 64), label="tiny-unet", base_channels=4, depth=2)


def test_in_process_rows_have_required_keys_and_consistent_numbers(tiny):
    from sonoseg.bench.benchmark import BenchmarkPlan, rows_markdown, run_benchmark

    plan = BenchmarkPlan(backends=("torch", "onnx", "onnx-int8"), threads=(1,), batches=(1, 2), e2e=True,
                         warmup=1, iters=4, min_iters=2, max_seconds=2.0, isolate=False)
    seen = []
    rows = run_benchmark([tiny], plan, on_row=seen.append)
    assert seen == rows
    assert len(rows) == 3 * (2 + 1)  # backends x (2 batch sizes + 1 e2e)
    for r in rows:
        assert r["status"] == "ok", r
        assert REQUIRED <= set(r)
        assert r["model"] == "tiny-unet" and r["size"] == "64x64" and r["threads"] == 1
        assert 0 < r["median_ms"] <= r["p95_ms"]
        assert r["fps"] == pytest.approx(r["batch"] * 1000.0 / r["median_ms"], rel=1e-3)
        assert r["peak_rss_mb"] >= r["base_rss_mb"] > 0
        assert 2 <= r["iters"] <= 4
    modes = {(r["backend"], r["mode"], r["batch"]) for r in rows}
    assert ("onnx-int8", "e2e", 1) in modes and ("torch", "model", 2) in modes
    md = rows_markdown(rows)
    assert md.count("\n") == len(rows) + 2 and "| tiny-unet | e2e | onnx-int8 | 1 | 1 |" in md


def test_isolated_row_runs_in_fresh_process_without_torch(tiny, tmp_path):
    """An ONNX row in its own process: peak RSS is that of an onnxruntime-only deployment."""
    from sonoseg.export import export_onnx
    from sonoseg.bench.benchmark import RowSpec, run_row_isolated

    export_onnx(tiny.module, tmp_path / "t.onnx", config=tiny.config)
    spec = RowSpec("tiny-unet", "onnx", str(tmp_path / "t.onnx"), threads=1, size=(64, 64), warmup=1, iters=3,
                   min_iters=1, config_json=tiny.config.model_dump_json())
    row = run_row_isolated(spec)
    assert row["status"] == "ok", row
    assert row["rss_method"] == "VmHWM of a fresh process per row"
    assert row["iters"] == 3 and row["median_ms"] > 0
    assert row["torch_imported"] is False  # an ONNX deployment never loads libtorch
    assert 0 < row["base_rss_mb"] < row["peak_rss_mb"]


def test_broken_source_gives_failed_row_not_exception(tmp_path):
    from sonoseg.bench.benchmark import RowSpec, run_row

    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    row = run_row(RowSpec("x", "onnx", str(tmp_path / "bad.onnx"), threads=1, size=(32, 32), iters=1))
    assert row["status"] == "failed" and "not a loadable ONNX model" in row["note"]
    assert row["median_ms"] is None


def test_unavailable_compile_is_skipped_with_reason(tiny, monkeypatch):
    from sonoseg.bench.benchmark import BenchmarkPlan, run_benchmark

    monkeypatch.setattr(torch, "compile", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no C++ compiler")))
    plan = BenchmarkPlan(backends=("torch-compile",), threads=(1,), e2e=False, iters=2, min_iters=1, isolate=False)
    (row,) = run_benchmark([tiny], plan)
    assert row["status"] == "skipped" and "no C++ compiler" in row["note"]


def test_cli_writes_json(tmp_path):
    from typer.testing import CliRunner

    from sonoseg.cli.main import app
    from sonoseg.models import create_model_from_config
    from sonoseg.train.checkpoint import save_checkpoint

    cfg = SonosegConfig.model_validate({"preprocess": {"size": [64, 64]},
                                        "model": {"name": "unet", "params": {"base_channels": 4, "depth": 2}}})
    ckpt = save_checkpoint(tmp_path / "m.pt", config=cfg, model_state=create_model_from_config(cfg.model).state_dict())
    out = tmp_path / "b.json"
    res = CliRunner().invoke(app, ["benchmark", "--model", str(ckpt), "--backends", "torch,onnx", "--threads", "1",
                                   "--batch", "1,2", "--iters", "3", "--warmup", "1", "--no-isolate", "--json", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["machine"]["cpu_count"] >= 1 and "onnxruntime" in data["machine"]
    rows = data["rows"]
    assert len(rows) == 2 * 3
    assert all(REQUIRED <= set(r) and r["status"] == "ok" for r in rows)
    assert {r["mode"] for r in rows} == {"model", "e2e"}
    assert np.isfinite([r["median_ms"] for r in rows]).all()
    bad = CliRunner().invoke(app, ["benchmark", "--checkpoint", str(ckpt), "--backends", "tensorrt"])
    assert bad.exit_code == 2
