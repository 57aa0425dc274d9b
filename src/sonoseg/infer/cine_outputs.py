"""Cine helpers: temporal smoothing of per-frame probabilities, and the overlay video.

Smoothing averages each frame's foreground probability (original pixels) with its neighbours in a
centred window of ``window`` frames (shorter at the ends) before thresholding, so a steady structure
stops flickering between frames; the stream stays bounded (``window`` probability maps in memory).
The overlay video is an animated WebP written by imageio's Pillow plugin, frames downscaled to at
most ``max_side`` pixels so a long cine stays small in memory and on disk.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

import numpy as np


def temporal_smooth(items: Iterable[tuple], window: int, to_mask: Callable[[np.ndarray], np.ndarray]) -> Iterator[tuple]:
    """``items``: (frame, pred) with ``pred.probability``; yields (frame, pred, mask, mean probability)."""
    if window <= 1:
        for frame, pred in items:
            yield frame, pred, pred.mask, pred.probability
        return
    half = window // 2
    buf: deque = deque()  # (index, frame, pred)
    nxt = 0  # next index to emit

    def emit(last: int):
        nonlocal nxt
        members = [b for b in buf if abs(b[0] - nxt) <= half and b[0] <= last]
        p = np.mean([b[2].probability for b in members], axis=0).astype(np.float32)
        _, frame, pred = next(b for b in buf if b[0] == nxt)
        nxt += 1
        while buf and buf[0][0] < nxt - half:
            buf.popleft()
        return frame, pred, to_mask(p), p

    i = -1
    for i, (frame, pred) in enumerate(items):
        buf.append((i, frame, pred))
        if i - nxt >= half:
            yield emit(i)
    while nxt <= i:
        yield emit(i)


class OverlayVideo:
    """Collects overlay frames (downscaled) and writes them as one animated WebP on ``close``."""

    def __init__(self, path: str | Path, frame_time_ms: Optional[float], max_side: int = 480):
        self.path = Path(path)
        self.duration = float(frame_time_ms) if frame_time_ms else 40.0
        self.max_side = max_side
        self.frames: list[np.ndarray] = []

    def add(self, rgb: np.ndarray) -> None:
        import cv2

        h, w = rgb.shape[:2]
        s = min(1.0, self.max_side / max(h, w))
        if s < 1.0:
            rgb = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        self.frames.append(np.ascontiguousarray(rgb, dtype=np.uint8))

    def close(self) -> Optional[Path]:
        if not self.frames:
            return None
        import imageio.v3 as iio

        iio.imwrite(self.path, np.stack(self.frames), extension=".webp", plugin="pillow",
                    duration=self.duration, loop=0, lossless=False, quality=80)
        self.frames = []
        return self.path
