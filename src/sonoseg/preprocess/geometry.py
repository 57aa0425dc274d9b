"""Geometry between original image pixels and the fixed model grid, and its exact inverse.

original (H, W) --ROI crop--> roi (h, w) --scale--> resized (rh, rw) --pad / crop--> grid (gh, gw)

One :class:`GridTransform` records every number of that chain, so that masks go onto the grid for
training (``to_grid``) and predictions come back onto the original pixels (``to_original``) with
the same arithmetic. It is JSON-serialisable and is stored next to predictions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from sonoseg.errors import ConfigError

Interpolation = Literal["nearest", "linear", "area", "auto"]
ResizeMode = Literal["letterbox", "crop"]

_CV2_DTYPES = (np.uint8, np.uint16, np.int16, np.float32, np.float64)


def resize_nearest(arr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixel-centre nearest neighbour: dst i <- src floor((i + 0.5) * src / dst).

    Own implementation because it works for every dtype (int64 labels, bool) and is exact: OpenCV's
    INTER_NEAREST samples the top-left corner (half-pixel shift) and INTER_NEAREST_EXACT uses
    fixed-point arithmetic that rounds exact ties differently. With this rule an upsample followed
    by the inverse downsample returns the input unchanged.
    """
    h, w = arr.shape[:2]
    nh, nw = int(shape[0]), int(shape[1])
    if (h, w) == (nh, nw):
        return arr.copy()
    iy = np.minimum(((np.arange(nh) + 0.5) * h) // nh, h - 1).astype(np.intp)
    ix = np.minimum(((np.arange(nw) + 0.5) * w) // nw, w - 1).astype(np.intp)
    return arr[iy[:, None], ix[None, :]]


def resize(arr: np.ndarray, shape: tuple[int, int], interpolation: Interpolation = "auto") -> np.ndarray:
    """Resize to ``shape`` = (rows, cols); dtype is kept (integers are rounded back).

    ``auto`` = INTER_AREA when shrinking (anti-aliasing), INTER_LINEAR when enlarging.
    """
    arr = np.asarray(arr)
    nh, nw = int(shape[0]), int(shape[1])
    if arr.shape[:2] == (nh, nw):
        return arr.copy()
    if interpolation == "nearest":
        return resize_nearest(arr, (nh, nw))
    if interpolation == "auto":
        interpolation = "area" if nh * nw < arr.shape[0] * arr.shape[1] else "linear"
    flag = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA}.get(interpolation)
    if flag is None:
        raise ConfigError(f"unknown interpolation {interpolation!r} (nearest | linear | area | auto)")
    src = arr if arr.dtype in _CV2_DTYPES else arr.astype(np.float32)
    out = cv2.resize(np.ascontiguousarray(src), (nw, nh), interpolation=flag)
    if arr.ndim == 3 and out.ndim == 2:  # cv2 drops a singleton channel
        out = out[..., None]
    if out.dtype != arr.dtype:
        if np.issubdtype(arr.dtype, np.integer):
            info = np.iinfo(arr.dtype)
            out = np.clip(np.rint(out), info.min, info.max)
        elif arr.dtype == np.bool_:
            out = out >= 0.5
        out = out.astype(arr.dtype)
    return out


def _paste_ranges(offset: int, src_len: int, dst_len: int) -> tuple[int, int, int]:
    """Overlap of a source segment placed at ``offset`` on a destination: (dst_start, src_start, n)."""
    d0 = max(offset, 0)
    s0 = max(-offset, 0)
    n = max(0, min(src_len - s0, dst_len - d0))
    return d0, s0, n


@dataclass(frozen=True)
class GridTransform:
    """All numbers of original -> grid. Boxes are half-open (y0, x0, y1, x1) in original pixels.

    ``offset`` = (dy, dx): grid position of the resized ROI's top-left pixel. Positive values are
    letterbox padding, negative values mean that much of the resized ROI was cropped away.
    """

    original_shape: tuple[int, int]
    roi: tuple[int, int, int, int]
    grid_shape: tuple[int, int]
    resized_shape: tuple[int, int]
    offset: tuple[int, int]
    mode: str = "letterbox"
    scale: float = 1.0  # nominal factor (resized / roi); exact per-axis values: scale_yx

    # ---------- construction ----------
    @classmethod
    def build(
        cls,
        original_shape: tuple[int, ...],
        grid_shape: tuple[int, int],
        roi: tuple[int, int, int, int] | None = None,
        mode: ResizeMode = "letterbox",
    ) -> "GridTransform":
        """Aspect-preserving fit of ``roi`` into ``grid_shape``: letterbox (fit inside, centred pads)
        or crop (cover the grid, centred crop)."""
        H, W = int(original_shape[0]), int(original_shape[1])
        y0, x0, y1, x1 = (0, 0, H, W) if roi is None else (int(v) for v in roi)
        if not (0 <= y0 < y1 <= H and 0 <= x0 < x1 <= W):
            raise ValueError(f"ROI {roi} is empty or outside the image {H}x{W}")
        gh, gw = int(grid_shape[0]), int(grid_shape[1])
        if gh < 1 or gw < 1:
            raise ConfigError(f"grid size must be positive, got {grid_shape}")
        h, w = y1 - y0, x1 - x0
        if mode == "letterbox":
            s = min(gh / h, gw / w)
            rh, rw = min(gh, max(1, round(h * s))), min(gw, max(1, round(w * s)))
            offset = ((gh - rh) // 2, (gw - rw) // 2)
        elif mode == "crop":
            s = max(gh / h, gw / w)
            rh, rw = max(gh, round(h * s)), max(gw, round(w * s))
            offset = (-((rh - gh) // 2), -((rw - gw) // 2))
        else:
            raise ConfigError(f"unknown resize mode {mode!r} (letterbox | crop)")
        return cls((H, W), (y0, x0, y1, x1), (gh, gw), (int(rh), int(rw)), offset, mode, float(s))

    # ---------- derived numbers ----------
    @property
    def roi_shape(self) -> tuple[int, int]:
        y0, x0, y1, x1 = self.roi
        return (y1 - y0, x1 - x0)

    @property
    def scale_yx(self) -> tuple[float, float]:
        """Exact per-axis scale (grid pixels per original pixel) after integer rounding."""
        h, w = self.roi_shape
        return (self.resized_shape[0] / h, self.resized_shape[1] / w)

    @property
    def pad(self) -> tuple[int, int, int, int]:
        """Letterbox padding (top, bottom, left, right) in grid pixels; zeros when cropping."""
        dy, dx = self.offset
        top, left = max(dy, 0), max(dx, 0)
        bottom = max(self.grid_shape[0] - self.resized_shape[0] - top, 0)
        right = max(self.grid_shape[1] - self.resized_shape[1] - left, 0)
        return (top, bottom, left, right)

    @property
    def crop(self) -> tuple[int, int]:
        """(top, left) pixels of the resized ROI cut away by a centre crop; zeros for letterbox."""
        return (max(-self.offset[0], 0), max(-self.offset[1], 0))

    def grid_spacing(self, spacing: tuple[float, float]) -> tuple[float, float]:
        """Physical size of one grid pixel given the original (row, col) pixel spacing."""
        sy, sx = self.scale_yx
        return (spacing[0] / sy, spacing[1] / sx)

    def valid_grid_mask(self) -> np.ndarray:
        """bool grid: True where the grid shows image content (not letterbox padding)."""
        m = np.zeros(self.grid_shape, dtype=bool)
        (gy, _, ny), (gx, _, nx) = self._overlap()
        m[gy : gy + ny, gx : gx + nx] = True
        return m

    def _overlap(self) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        return (
            _paste_ranges(self.offset[0], self.resized_shape[0], self.grid_shape[0]),
            _paste_ranges(self.offset[1], self.resized_shape[1], self.grid_shape[1]),
        )

    # ---------- mapping ----------
    def roi_to_grid(self, roi_arr: np.ndarray, interpolation: Interpolation = "nearest", fill: float = 0) -> np.ndarray:
        """Already ROI-cropped array (h, w[, C]) -> grid (used by the image pipeline)."""
        roi_arr = np.asarray(roi_arr)
        if roi_arr.shape[:2] != self.roi_shape:
            raise ValueError(f"array {roi_arr.shape[:2]} does not match the ROI shape {self.roi_shape}")
        resized = resize(roi_arr, self.resized_shape, interpolation)
        out = np.full(self.grid_shape + roi_arr.shape[2:], fill, dtype=resized.dtype)
        (gy, sy, ny), (gx, sx, nx) = self._overlap()
        out[gy : gy + ny, gx : gx + nx] = resized[sy : sy + ny, sx : sx + nx]
        return out

    def to_grid(self, arr: np.ndarray, interpolation: Interpolation = "nearest", fill: float = 0) -> np.ndarray:
        """Original pixels (H, W[, C]) -> model grid. Use "nearest" for label masks."""
        arr = np.asarray(arr)
        if arr.shape[:2] != self.original_shape:
            raise ValueError(f"array {arr.shape[:2]} does not match the original shape {self.original_shape}")
        y0, x0, y1, x1 = self.roi
        return self.roi_to_grid(arr[y0:y1, x0:x1], interpolation, fill)

    def to_original(self, arr: np.ndarray, interpolation: Interpolation = "nearest", fill: float = 0) -> np.ndarray:
        """Model grid (gh, gw[, C]) -> original shape; pixels outside the ROI (or cut by the centre
        crop) get ``fill``. "linear" suits probability maps, "nearest" label maps."""
        arr = np.asarray(arr)
        if arr.shape[:2] != self.grid_shape:
            raise ValueError(f"array {arr.shape[:2]} does not match the grid shape {self.grid_shape}")
        extra = arr.shape[2:]
        canvas = np.full(self.resized_shape + extra, fill, dtype=arr.dtype)
        (gy, sy, ny), (gx, sx, nx) = self._overlap()
        canvas[sy : sy + ny, sx : sx + nx] = arr[gy : gy + ny, gx : gx + nx]
        back = resize(canvas, self.roi_shape, interpolation)
        out = np.full(self.original_shape + extra, fill, dtype=back.dtype)
        y0, x0, y1, x1 = self.roi
        out[y0:y1, x0:x1] = back
        return out

    def grid_points_to_original(self, yx: np.ndarray) -> np.ndarray:
        """(N, 2) grid pixel coordinates (row, col; pixel centres) -> original pixel coordinates."""
        p = np.asarray(yx, dtype=np.float64).reshape(-1, 2)
        sy, sx = self.scale_yx
        y = (p[:, 0] - self.offset[0] + 0.5) / sy - 0.5 + self.roi[0]
        x = (p[:, 1] - self.offset[1] + 0.5) / sx - 0.5 + self.roi[1]
        return np.stack([y, x], axis=1)

    # ---------- serialisation ----------
    def to_dict(self) -> dict[str, Any]:
        return {
            "original_shape": list(self.original_shape),
            "roi": list(self.roi),
            "grid_shape": list(self.grid_shape),
            "resized_shape": list(self.resized_shape),
            "offset": list(self.offset),
            "mode": self.mode,
            "scale": self.scale,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GridTransform":
        return cls(
            original_shape=tuple(int(v) for v in d["original_shape"]),  # type: ignore[arg-type]
            roi=tuple(int(v) for v in d["roi"]),  # type: ignore[arg-type]
            grid_shape=tuple(int(v) for v in d["grid_shape"]),  # type: ignore[arg-type]
            resized_shape=tuple(int(v) for v in d["resized_shape"]),  # type: ignore[arg-type]
            offset=tuple(int(v) for v in d["offset"]),  # type: ignore[arg-type]
            mode=str(d.get("mode", "letterbox")),
            scale=float(d.get("scale", 1.0)),
        )


def letterbox(
    image: np.ndarray, size: tuple[int, int], pad_value: float = 0.0, interpolation: Interpolation = "auto"
) -> tuple[np.ndarray, GridTransform]:
    """Fit the whole image inside ``size`` (rows, cols) keeping its aspect ratio; centred padding."""
    t = GridTransform.build(np.shape(image), size, None, "letterbox")
    return t.to_grid(image, interpolation, fill=pad_value), t


def center_crop(
    image: np.ndarray, size: tuple[int, int], interpolation: Interpolation = "auto"
) -> tuple[np.ndarray, GridTransform]:
    """Scale so the image covers ``size`` (aspect kept), then cut the centre (seed 000: the central
    square for a square grid)."""
    t = GridTransform.build(np.shape(image), size, None, "crop")
    return t.to_grid(image, interpolation), t
