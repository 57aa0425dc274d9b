"""How far another backend's output is from PyTorch's on the same model-grid images: masks and class
probabilities of a run function, and per-image mask agreement. The fast-model cache checks its int8
build with these; ``sonoseg export`` gates its files with them."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np


def _masks_from_logits(logits: np.ndarray) -> np.ndarray:
    """N x K x H x W logits -> N x H x W uint8 labels (sigmoid >= 0.5 <=> logit >= 0 for K = 1)."""
    if logits.shape[1] == 1:
        return (logits[:, 0] >= 0).astype(np.uint8)
    return logits.argmax(1).astype(np.uint8)


def predict_masks(run: Callable[[np.ndarray], np.ndarray], images: Sequence[np.ndarray], in_channels: int = 1,
                  batch_size: int = 8) -> list[np.ndarray]:
    """Masks on the model grid for HxW (or CxHxW) float32 images, batching images of equal size."""
    out: list[np.ndarray] = []
    i = 0
    while i < len(images):
        j = i + 1
        while j < len(images) and j - i < batch_size and np.shape(images[j]) == np.shape(images[i]):
            j += 1
        x = np.stack([np.asarray(im, np.float32) for im in images[i:j]])
        if x.ndim == 3:
            x = x[:, None]
        if x.shape[1] == 1 and in_channels > 1:
            x = np.repeat(x, in_channels, axis=1)
        out.extend(_masks_from_logits(np.asarray(run(np.ascontiguousarray(x)))))
        i = j
    return out


def predict_class_probs(run_all, images: Sequence[np.ndarray], in_channels: int = 1) -> Optional[np.ndarray]:
    """N x C softmax probabilities of a class head (None without one), one image at a time."""
    out = []
    for im in images:
        x = np.asarray(im, np.float32)
        x = x[None, None] if x.ndim == 2 else x[None]
        if x.shape[1] == 1 and in_channels > 1:
            x = np.repeat(x, in_channels, axis=1)
        c = run_all(np.ascontiguousarray(x))[1]
        if c is None:
            return None
        e = np.exp(c - c.max(1, keepdims=True))
        out.append((e / e.sum(1, keepdims=True))[0])
    return np.stack(out) if out else None


def per_image_agreement(a: Sequence[np.ndarray], b: Sequence[np.ndarray], min_area: int = 64) -> np.ndarray:
    """Dice of each pair of foreground masks (the fp32 model's and another backend's).

    A pair where both masks have fewer than ``min_area`` pixels counts as agreeing (1.0): a few
    pixels of noise either side are not a disagreement about a finding, and their Dice is
    meaningless. Otherwise plain Dice, so a small blob present in one mask only scores ~0."""
    out = []
    for x, y in zip(a, b):
        x, y = np.asarray(x) > 0, np.asarray(y) > 0
        nx, ny = int(x.sum()), int(y.sum())
        out.append(1.0 if nx < min_area and ny < min_area else 2.0 * int((x & y).sum()) / (nx + ny))
    return np.asarray(out, dtype=float)
