"""Flip test-time augmentation: predict on flipped copies, flip each output back, average.

``flips`` lists the axes to flip: "h" (horizontal = columns, last axis) and/or "v" (vertical =
rows, second-to-last axis); every combination is used, identity included, as ttach/MONAI-style
flip TTA does: ("h",) -> {id, h}; ("h", "v") -> {id, h, v, hv}. ``predict_fn`` must return
probabilities (sigmoid/softmax already applied) whose last two axes are the image rows and columns;
averaging probabilities keeps the output a probability map.
"""

from __future__ import annotations

from itertools import combinations
from typing import Callable, Sequence

import numpy as np

_AXIS = {"h": -1, "v": -2}


def flip_sets(flips: Sequence[str]) -> list[tuple[int, ...]]:
    """All subsets of the requested flip axes, identity first (duplicates removed)."""
    axes = []
    for f in flips:
        if f not in _AXIS:
            raise ValueError(f"unknown flip {f!r}: use 'h' and/or 'v'")
        if _AXIS[f] not in axes:
            axes.append(_AXIS[f])
    return [c for r in range(len(axes) + 1) for c in combinations(axes, r)]


def tta_predict(
    predict_fn: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    flips: Sequence[str] = ("h",),
) -> np.ndarray:
    """Mean of ``unflip(predict_fn(flip(image)))`` over all flip combinations (float32)."""
    x = np.asarray(image)
    if x.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (C, H, W), got shape {x.shape}")
    total = None
    sets = flip_sets(flips)
    for axes in sets:
        xi = np.ascontiguousarray(np.flip(x, axis=axes)) if axes else x
        yi = np.asarray(predict_fn(xi), dtype=np.float32)
        if yi.ndim < 2:
            raise ValueError(f"predict_fn must return an array with (H, W) as last axes, got shape {yi.shape}")
        yi = np.flip(yi, axis=axes) if axes else yi
        total = yi.astype(np.float64) if total is None else total + yi
    return (total / len(sets)).astype(np.float32)
