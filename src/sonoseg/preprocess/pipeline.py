"""The fixed preprocessing chain (see PreprocessConfig) and its mask counterpart."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from sonoseg.io.types import ImageMeta
from sonoseg.preprocess.config import PreprocessConfig
from sonoseg.preprocess.geometry import GridTransform
from sonoseg.preprocess.roi import Box, find_roi
from sonoseg.preprocess.steps import (
    affine_normalization,
    apply_clahe,
    median_filter,
    normalize,
    to_grayscale,
    to_uint8,
)


@dataclass
class Preprocessed:
    """Model-grid image (float32, ``cfg.size``; (H, W, C) only when grayscale is off and the input
    has colour) plus the transform that maps grid arrays back onto the original pixels."""

    image: np.ndarray
    transform: GridTransform

    @property
    def roi(self) -> Box:
        return self.transform.roi


def _prepare_channels(image: np.ndarray, cfg: PreprocessConfig, meta: Optional[ImageMeta]) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 3 and img.shape[2] not in (3, 4):
        raise ValueError(f"expected one 2-D frame or an HxWx(1|3|4) image, got shape {img.shape}")
    if img.ndim not in (2, 3):
        raise ValueError(f"expected one 2-D frame, got shape {img.shape}")
    if cfg.grayscale:
        return to_grayscale(img, meta.photometric if meta is not None else None)
    return img[..., :3] if img.ndim == 3 else img


def preprocess_image(image: np.ndarray, cfg: PreprocessConfig, meta: Optional[ImageMeta] = None) -> Preprocessed:
    """grayscale -> ROI crop -> uint8 -> median -> CLAHE -> normalise (float32) -> resize to cfg.size.

    Intensity statistics (min-max, CLAHE histograms, z-score) are taken inside the ROI only, so
    scanner UI outside the sector does not influence them.
    """
    img = _prepare_channels(image, cfg, meta)
    box = find_roi(img, meta, cfg.roi)
    y0, x0, y1, x1 = box
    work = to_uint8(img[y0:y1, x0:x1])
    work = median_filter(work, cfg.median_kernel)
    if cfg.clahe:
        work = apply_clahe(work, cfg.clahe_clip_limit, cfg.clahe_tile_grid)
    transform = GridTransform.build(img.shape[:2], cfg.size, box, cfg.resize_mode)
    affine = affine_normalization(work, cfg.normalize)
    if affine is None:  # percentile clips: not linear, so it must run before the resize
        norm = normalize(work, cfg.normalize, cfg.percentile_window)
        grid = transform.roi_to_grid(norm, "auto", fill=cfg.pad_value)
    else:
        # min-max and z-score are affine and the resize (area / linear weights summing to 1) is
        # linear, so they commute: normalising the small grid instead of the full ROI gives the same
        # values (to float rounding, tested) for a fraction of the work.
        shift, scale = affine
        grid = transform.roi_to_grid(work.astype(np.float32), "auto", fill=0.0)
        grid = (grid - shift) * scale
        if transform.pad != (0, 0, 0, 0):
            grid[~transform.valid_grid_mask()] = cfg.pad_value
    return Preprocessed(np.ascontiguousarray(grid, dtype=np.float32), transform)


def _mask_labels(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[..., 0] if m.shape[2] == 1 else m.max(axis=2)  # colour-saved masks
    if m.dtype == np.bool_:
        return m.astype(np.uint8)
    if np.issubdtype(m.dtype, np.floating):
        if np.all(np.isin(m, (0.0, 1.0))):
            return m.astype(np.uint8)
        if np.all(np.isin(m, (0.0, 255.0))):
            return (m > 0).astype(np.uint8)
        return np.rint(m).astype(np.int64)
    values = np.unique(m)
    if np.all(np.isin(values, (0, 255))):
        return (m > 0).astype(np.uint8)
    if m.dtype == np.uint8 and values.max() > 127 and len(values) > 8:
        return (m >= 128).astype(np.uint8)  # anti-aliased / JPEG-compressed binary mask
    return m


def preprocess_mask(mask: np.ndarray, transform: GridTransform) -> np.ndarray:
    """Original-pixel label mask -> model grid with nearest neighbour (labels preserved).

    0/255 (and bool) masks become 0/1; anti-aliased 8-bit masks are thresholded at 128; other
    integer masks keep their label values. Padding is background (0).
    """
    return transform.to_grid(_mask_labels(mask), "nearest", fill=0)


class Preprocessor:
    """Callable wrapper for pipelines / datasets: ``Preprocessor(cfg)(image, meta) -> Preprocessed``."""

    def __init__(self, cfg: Optional[PreprocessConfig] = None):
        self.cfg = cfg if cfg is not None else PreprocessConfig()

    def __call__(self, image: np.ndarray, meta: Optional[ImageMeta] = None) -> Preprocessed:
        return preprocess_image(image, self.cfg, meta)

    def mask(self, mask: np.ndarray, transform: GridTransform) -> np.ndarray:
        return preprocess_mask(mask, transform)

    def __repr__(self) -> str:
        return f"Preprocessor({self.cfg!r})"
