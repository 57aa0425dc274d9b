"""Real frames for a speed benchmark: decoded images of a dataset (end-to-end input) and their preprocessed grids
(int8 calibration for latency rows only; the accuracy-checked int8 model comes from ``sonoseg export``)."""

from __future__ import annotations

from pathlib import Path


def dataset_frames(dataset: Path, cfg, n_frames: int = 16, n_calib: int = 32):
    """``n_frames`` decoded frames of ``dataset`` (a cine gives its first) and ``n_calib`` preprocessed grids, both
    from one seeded pick of images."""
    import numpy as np

    from sonoseg.data import discover_dataset
    from sonoseg.io import load_image
    from sonoseg.preprocess import preprocess_image

    samples = discover_dataset(dataset)
    rng = np.random.default_rng(0)
    pick = rng.choice(len(samples), size=min(len(samples), max(n_frames, n_calib)), replace=False)
    frames = []
    for i in pick:
        loaded = load_image(samples[int(i)].image_path)
        px = loaded.pixels
        if loaded.meta.frames > 1 and px.shape[0] == loaded.meta.frames:
            px = px[0]  # a cine: its first frame
        frames.append(np.ascontiguousarray(px))
    calib = [preprocess_image(f, cfg.preprocess).image for f in frames[:n_calib]]
    return frames[:n_frames], calib
