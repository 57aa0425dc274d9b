"""Cine outputs: FrameTime kept (NIfTI pixdim[4], JSON), per-frame progress, overlay video, temporal
smoothing, one JSON shape; out-of-scope flags in table/JSON/overlay with a domain sidecar."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    from sonoseg.config import load_config
    from sonoseg.models import create_model_from_config
    from sonoseg.train.checkpoint import save_checkpoint

    cfg = load_config(None, ["model.name=unet", "model.params={base_channels: 4, depth: 2}", "preprocess.size=[64, 64]",
                             "preprocess.roi=none"])
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "tiny.pt", config=cfg,
                           model_state=create_model_from_config(cfg.model).state_dict())


@pytest.fixture(scope="module")
def cine(tmp_path_factory) -> Path:
    from sonoseg.io.us_wrap import wrap_as_us_cine

    rng = np.random.default_rng(0)
    frames = (rng.random((5, 48, 64)) * 120).astype(np.uint8)
    frames[:, 15:35, 20:45] += 100
    return wrap_as_us_cine(frames, tmp_path_factory.mktemp("cine") / "loop.dcm", frame_time_ms=25.0,
                           pixel_spacing_mm=(0.3, 0.3))


def test_cine_frame_time_progress_video_and_json(tiny_ckpt, cine, tmp_path):
    import nibabel as nib
    from PIL import Image

    from sonoseg.infer.options import PredictOptions
    from sonoseg.infer.run import predict_inputs

    calls = []
    opts = PredictOptions(model=tiny_ckpt, threads=1, batch_size=2, video=True, threshold=0.5)
    payload = predict_inputs([cine], tmp_path, opts, log=lambda m: None, progress=lambda *a: calls.append(a))
    (r,) = payload["results"]
    assert r["ok"], r["error"]
    assert calls == [("loop.dcm", i, 5) for i in range(1, 6)]  # per frame, not per file
    nii = nib.load(r["mask"])
    assert nii.shape == (64, 48, 1, 5) and nii.header.get_zooms()[3] == pytest.approx(25.0)
    assert nii.header.get_xyzt_units() == ("mm", "msec")
    meas = json.loads(Path(r["measurements"]).read_text())
    assert meas["frame_time_ms"] == pytest.approx(25.0)
    assert [f["time_ms"] for f in meas["frames"]] == pytest.approx([0, 25, 50, 75, 100])
    assert meas["spacing_source"] == "SequenceOfUltrasoundRegions" and meas["kind"] == "cine"
    assert meas["pixel_spacing_mm"] == pytest.approx([0.3, 0.3])
    with Image.open(r["video"]) as vid:  # animated WebP: one overlay per frame
        assert vid.format == "WEBP" and vid.n_frames == 5 and vid.size == (64, 48)
    seg_frames = set(np.unique(np.asarray(nii.dataobj)).tolist())
    assert seg_frames <= {0, 1}  # label values, as in the PNG masks


def test_temporal_smoothing_averages_a_centred_window():
    from sonoseg.infer.cine_outputs import temporal_smooth

    probs = [np.full((2, 2), v, np.float32) for v in (0.0, 1.0, 0.0, 1.0, 0.0)]
    items = [(i, SimpleNamespace(probability=p, mask=(p > 0.5).astype(np.uint8))) for i, p in enumerate(probs)]
    out = list(temporal_smooth(iter(items), 3, lambda p: (p >= 0.5).astype(np.uint8)))
    means = [float(o[3][0, 0]) for o in out]
    assert means == pytest.approx([0.5, 1 / 3, 2 / 3, 1 / 3, 0.5])  # ends use the frames that exist
    assert [o[0] for o in out] == [0, 1, 2, 3, 4]
    flicker = [int(o[2][0, 0]) for o in out]
    assert flicker == [1, 0, 1, 0, 1]
    unsmoothed = list(temporal_smooth(iter(items), 1, None))
    assert [int(o[2][0, 0]) for o in unsmoothed] == [0, 1, 0, 1, 0]


def test_out_of_scope_flagged_in_json_table_and_no_seg(tiny_ckpt, cine, tmp_path):
    """Statistics fitted on one kind of image: an input of another kind is flagged, its SEG withheld."""
    from typer.testing import CliRunner

    from sonoseg.cli.main import app
    from sonoseg.runtime.backends import load_torch_model
    from sonoseg.infer.domain import DomainStats, encoder_features, sidecar_path
    from sonoseg.infer.options import PredictOptions
    from sonoseg.infer.run import predict_inputs

    model, _ = load_torch_model(tiny_ckpt)
    rng = np.random.default_rng(1)
    smooth = [np.clip(rng.normal(0.5, 0.05, (64, 64)), 0, 1).astype(np.float32) for _ in range(40)]
    feats = encoder_features(model, np.stack(smooth))
    ck = tmp_path / "m.pt"
    ck.write_bytes(Path(tiny_ckpt).read_bytes())
    DomainStats.fit(feats[:30], feats[30:], k=4).save(sidecar_path(ck))
    payload = predict_inputs([cine], tmp_path / "o", PredictOptions(model=ck, threads=1), log=lambda m: None)
    (r,) = payload["results"]
    assert r["summary"]["in_scope"] is False and r["seg"] is None and payload["n_out_of_scope"] == 1
    meas = json.loads(Path(r["measurements"]).read_text())
    assert meas["in_scope"] is False and meas["domain"]["score"] > meas["domain"]["threshold"]
    assert all(0.0 <= f["confidence"] <= 1.0 for f in meas["frames"])
    res = CliRunner().invoke(app, ["predict", str(cine), "--model", str(ck), "-o", str(tmp_path / "o2"), "--no-progress"],
                             env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "NO" in res.output and "not a finding" in res.output
    off = predict_inputs([cine], tmp_path / "o3", PredictOptions(model=ck, threads=1, domain=False), log=lambda m: None)
    assert off["results"][0]["summary"]["in_scope"] is None and off["results"][0]["seg"]
