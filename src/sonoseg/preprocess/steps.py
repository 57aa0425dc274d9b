"""Intensity steps of the preprocessing chain, each a pure function on a numpy array.

Seed 000 (speckle): 3x3 median + CLAHE via OpenCV; seed 004 §3.1: luminance grayscale and min-max
to 0..255. Every step accepts 2-D (H, W) arrays; colour-capable steps also take (H, W, C).
"""

from __future__ import annotations

from typing import Literal, Optional

import cv2
import numpy as np

from sonoseg.errors import ConfigError

NormalizeMethod = Literal["minmax", "zscore", "percentile"]

# ITU-R BT.601 luma weights: the same weights DICOM uses for the Y of YBR_FULL.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def _looks_like_ybr(image: np.ndarray) -> bool:
    """True when channels 1-2 sit around their mid value (Cb/Cr) rather than following channel 0.

    DICOM headers keep saying YBR_* even when the decoder already converted to RGB (pydicom does by
    default), so the header alone cannot tell which one we were handed.
    """
    c0 = image[..., 0].astype(np.float32)
    c1 = image[..., 1].astype(np.float32)
    if np.issubdtype(image.dtype, np.integer):
        mid = (float(np.iinfo(image.dtype).max) + 1.0) / 2.0
    else:
        mid = 0.5
    return float(np.median(np.abs(c1 - c0))) > float(np.median(np.abs(c1 - mid)))


def to_grayscale(image: np.ndarray, photometric: Optional[str] = None) -> np.ndarray:
    """One channel: RGB(A) -> BT.601 luminance; YBR (still encoded) -> its Y channel; 2-D unchanged.

    The dtype is kept (uint8 in -> uint8 out, rounded); a trailing singleton channel is squeezed.
    """
    img = np.asarray(image)
    if img.ndim == 2:
        return img
    if img.ndim != 3:
        raise ValueError(f"expected a 2-D or HxWxC image, got shape {img.shape}")
    if img.shape[2] == 1:
        return img[..., 0]
    if img.shape[2] not in (3, 4):
        raise ValueError(f"cannot convert {img.shape[2]} channels to grayscale")
    rgb = img[..., :3]
    if photometric and photometric.upper().startswith("YBR") and _looks_like_ybr(rgb):
        return np.ascontiguousarray(rgb[..., 0])
    if rgb.dtype in (np.uint8, np.uint16, np.float32):
        return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    w = np.asarray(LUMA_WEIGHTS, dtype=np.float64)
    gray = rgb.astype(np.float64) @ w
    if np.issubdtype(rgb.dtype, np.integer):
        return np.clip(np.rint(gray), np.iinfo(rgb.dtype).min, np.iinfo(rgb.dtype).max).astype(rgb.dtype)
    return gray.astype(rgb.dtype)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """uint8 passes through (already display range); anything else (uint16, int, float) is min-max
    scaled per image to 0..255 (seed 004 eq. 3.2). bool -> 0/255, constant images -> zeros."""
    img = np.asarray(image)
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.bool_:
        return img.astype(np.uint8) * 255
    f = img.astype(np.float64)
    finite = np.isfinite(f)
    if not finite.all():
        f = np.where(finite, f, np.nan)
    lo, hi = np.nanmin(f) if finite.any() else 0.0, np.nanmax(f) if finite.any() else 0.0
    if not np.isfinite(hi - lo) or hi <= lo:
        return np.zeros(img.shape, dtype=np.uint8)
    out = (f - lo) * (255.0 / (hi - lo))
    return np.nan_to_num(np.rint(out), nan=0.0).clip(0, 255).astype(np.uint8)


def median_filter(image: np.ndarray, kernel: int = 3) -> np.ndarray:
    """Speckle reduction with cv2.medianBlur (replicated borders). kernel 0/1 disables."""
    if kernel in (0, 1):
        return image
    if kernel < 0 or kernel % 2 == 0:
        raise ConfigError(f"median_kernel must be odd (or 0/1 to disable), got {kernel}")
    img = np.ascontiguousarray(image)
    if img.dtype != np.uint8 and kernel > 5:
        raise ValueError("median kernels > 5 need a uint8 image (OpenCV limitation); call to_uint8 first")
    return cv2.medianBlur(img, kernel)


def apply_clahe(image: np.ndarray, clip_limit: float = 2.0, tile_grid: tuple[int, int] = (8, 8)) -> np.ndarray:
    """Contrast Limited Adaptive Histogram Equalisation (cv2.createCLAHE) on a uint8/uint16 image.

    ``tile_grid`` is (rows, cols) like every size in sonoseg; OpenCV's tileGridSize is (cols, rows).
    Colour images are equalised channel by channel.
    """
    rows, cols = int(tile_grid[0]), int(tile_grid[1])
    if rows < 1 or cols < 1:
        raise ConfigError(f"clahe_tile_grid must be positive, got {tile_grid}")
    clahe = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=(cols, rows))
    img = np.ascontiguousarray(image)
    if img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"CLAHE needs uint8/uint16 input, got {img.dtype}")
    if img.ndim == 2:
        return clahe.apply(img)
    return np.stack([clahe.apply(np.ascontiguousarray(img[..., c])) for c in range(img.shape[2])], axis=-1)


def affine_normalization(image: np.ndarray, method: NormalizeMethod) -> Optional[tuple[float, float]]:
    """(shift, scale) with ``normalize(x) == (x - shift) * scale`` for the affine methods (minmax,
    zscore; statistics over the whole array, as :func:`normalize` takes them), None for percentile
    (it clips). Lets the pipeline normalise after resizing, which is cheaper and equivalent."""
    x = np.asarray(image)
    if method == "minmax":
        lo, hi = float(x.min()), float(x.max())
        return (lo, 1.0 / (hi - lo)) if hi > lo else (lo, 0.0)
    if method == "zscore":
        mean, std = float(x.mean(dtype=np.float64)), float(x.std(dtype=np.float64))
        return (mean, 1.0 / std) if std > 0 else (mean, 1.0)
    if method == "percentile":
        return None
    raise ConfigError(f"unknown normalisation {method!r} (minmax | zscore | percentile)")


def normalize(
    image: np.ndarray,
    method: NormalizeMethod = "minmax",
    percentiles: tuple[float, float] = (1.0, 99.0),
) -> np.ndarray:
    """Intensity normalisation to float32 (seed 000): statistics are taken over the whole array.

    - minmax: (x - min) / (max - min) -> 0..1 (constant image -> zeros)
    - zscore: (x - mean) / std (std 0 -> x - mean)
    - percentile: clip to the [p_lo, p_hi] percentiles, then rescale that window to 0..1
    """
    x = np.asarray(image, dtype=np.float32)
    if method == "minmax":
        lo, hi = float(x.min()), float(x.max())
        return ((x - lo) / (hi - lo)).astype(np.float32) if hi > lo else np.zeros_like(x)
    if method == "zscore":
        mean, std = float(x.mean(dtype=np.float64)), float(x.std(dtype=np.float64))
        return ((x - mean) / std).astype(np.float32) if std > 0 else (x - mean).astype(np.float32)
    if method == "percentile":
        p_lo, p_hi = float(percentiles[0]), float(percentiles[1])
        if not 0.0 <= p_lo < p_hi <= 100.0:
            raise ConfigError(f"percentile_window must satisfy 0 <= lo < hi <= 100, got {percentiles}")
        lo, hi = (float(v) for v in np.percentile(x, [p_lo, p_hi]))
        if hi <= lo:
            return np.zeros_like(x)
        return ((np.clip(x, lo, hi) - lo) / (hi - lo)).astype(np.float32)
    raise ConfigError(f"unknown normalisation {method!r} (minmax | zscore | percentile)")
