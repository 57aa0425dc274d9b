"""Predictor semantics with a stub backend (deterministic logits): geometry back to original pixels,
model-stored postprocessing with CLI overrides, flip TTA and streaming in batches."""

from __future__ import annotations

import numpy as np
import pytest

from sonoseg.config import load_config
from sonoseg.infer.predictor import PostprocessOptions, Predictor, merge_postprocess


class TwoBlobs:
    """Logits on the model grid: a big blob and a small one, positive inside, negative outside."""

    name, threads, config = "stub", 1, None

    def __init__(self):
        self.calls = []

    def run(self, x):
        self.calls.append(x.shape)
        n, _, h, w = x.shape
        out = np.full((n, 1, h, w), -5.0, np.float32)
        out[:, :, 10:30, 10:30] = 5.0
        out[:, :, 40:44, 40:44] = 5.0
        return out


def _cfg(*over):
    return load_config(None, ["preprocess.size=[64, 64]", "preprocess.clahe=false", "preprocess.median_kernel=0", *over])


def test_mask_returns_in_original_geometry_with_letterbox_inverse():
    cfg = _cfg()
    pred = Predictor(TwoBlobs(), cfg).predict(np.zeros((100, 200), np.uint8))
    assert pred.mask.shape == (100, 200)
    # letterbox: scale 64/200 = 0.32, vertical pad (64 - 32) / 2 = 16 rows; grid rows 16..47 hold the image
    ys, xs = np.nonzero(pred.mask)
    assert ys.min() == 0 and xs.min() == pytest.approx(10 / 0.32, abs=2)
    assert xs.max() == pytest.approx(44 / 0.32, abs=2)


def test_stored_postprocess_is_used_and_flags_override_it():
    cfg = _cfg("postprocess.keep_largest=true")
    img = np.zeros((64, 64), np.uint8)
    from scipy.ndimage import label

    assert label(Predictor(TwoBlobs(), cfg).predict(img).mask)[1] == 1  # model's setting: keep largest
    override = merge_postprocess(cfg, keep_largest=False)
    assert label(Predictor(TwoBlobs(), cfg, postprocess=override).predict(img).mask)[1] == 2
    assert merge_postprocess(_cfg(), min_size=5) == PostprocessOptions(False, 5, False)


def test_threshold_from_config():
    cfg = _cfg("postprocess.threshold=0.999")  # sigmoid(5) = 0.9933 < 0.999 -> nothing
    assert Predictor(TwoBlobs(), cfg).predict(np.zeros((64, 64), np.uint8)).mask.sum() == 0


def test_flip_tta_runs_all_flip_combinations_and_unflips():
    be = TwoBlobs()
    cfg = _cfg("postprocess.tta=[h, v]")
    p = Predictor(be, cfg).predict(np.zeros((64, 64), np.uint8))
    assert len(be.calls) == 4  # identity, h, v, hv
    # the stub ignores its input, so flipped outputs un-flipped are mirror images: the mean is symmetric
    np.testing.assert_allclose(p.grid_probability[0], p.grid_probability[0][::-1, ::-1], atol=1e-6)


def test_stream_batches_bound_the_work_per_call():
    be = TwoBlobs()
    frames = (np.zeros((50, 60), np.uint8) for _ in range(7))
    preds = list(Predictor(be, _cfg()).predict_stream(frames, batch_size=3))
    assert len(preds) == 7 and [c[0] for c in be.calls] == [3, 3, 1]
    assert all(p.mask.shape == (50, 60) for p in preds)
