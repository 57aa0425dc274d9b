"""Before/after figure for visual checks of preprocessing (matplotlib, no pyplot global state)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from sonoseg.preprocess.pipeline import Preprocessed


def display_uint8(image: np.ndarray) -> np.ndarray:
    """Any float/int image -> uint8 for viewing: 0..1 floats scaled by 255, others min-max."""
    img = np.asarray(image)
    if img.dtype == np.uint8:
        return img
    f = img.astype(np.float32)
    lo, hi = float(f.min()), float(f.max())
    if np.issubdtype(img.dtype, np.floating) and lo >= 0.0 and hi <= 1.0:
        return np.rint(f * 255).astype(np.uint8)
    if hi <= lo:
        return np.zeros(img.shape, dtype=np.uint8)
    return np.rint((f - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def before_after_figure(original: np.ndarray, pre: Preprocessed, path: str | Path, title: Optional[str] = None) -> Path:
    """Save original (ROI box in red) next to the model-grid image; returns ``path``."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    fig = Figure(figsize=(9, 4.5), dpi=100)
    ax0, ax1 = fig.subplots(1, 2)
    orig = display_uint8(original)
    gray = orig.ndim == 2
    ax0.imshow(orig, cmap="gray" if gray else None, vmin=0, vmax=255)
    y0, x0, y1, x1 = pre.transform.roi
    ax0.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor="red", linewidth=1.2))
    ax0.set_title(f"original {orig.shape[1]}x{orig.shape[0]} (ROI in red)", fontsize=9)
    grid = display_uint8(pre.image)
    ax1.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=255)
    ax1.set_title(f"model grid {grid.shape[1]}x{grid.shape[0]} ({pre.transform.mode})", fontsize=9)
    for ax in (ax0, ax1):
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path
