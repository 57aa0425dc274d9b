"""Ultrasound region of interest (seed 004 §3.3): keep the scan sector, drop scanner UI outside it.

Two sources, in order of trust:
1. DICOM SequenceOfUltrasoundRegions (``meta.us_regions``): the scanner says where the tissue image
   is. We take the tissue region with the largest area.
2. Image analysis (``mode="auto"`` only, when there is no usable DICOM region): the imaging area is
   the large, non-dark, textured region; text, calipers and tick marks are thin and disappear
   under a morphological opening, separate UI blocks (grey bars, logos) are separate, small
   components. Threshold -> opening -> connected components -> the large ones -> bounding box.

Boxes are half-open (y0, x0, y1, x1). When nothing sensible is found the full image is returned:
cropping wrongly loses tissue (and lesions), not cropping only wastes some grid pixels.
"""

from __future__ import annotations

from typing import Literal, Optional, Sequence

import cv2
import numpy as np

from sonoseg.errors import ConfigError
from sonoseg.io.types import ImageMeta, UltrasoundRegion
from sonoseg.preprocess.steps import to_grayscale, to_uint8

Box = tuple[int, int, int, int]
RoiMode = Literal["none", "dicom", "auto"]

TISSUE = 1  # RegionDataType 1 = tissue; RegionSpatialFormat 1 = 2D
REGION_SLACK = 2  # pixels a US region may overhang the matrix (off-by-one writers) before it is distrusted
WEAK_DELTA = 2.5  # local mean above the background level: faint deep tissue still counts
STRONG_DELTA = 12  # clearly echogenic pixels (after a 5x5 median), the seeds of the imaging area
KEEP_FRACTION = 0.35  # keep every region with >= this share of the largest one (cysts split tissue)
MIN_COMPONENT_FRACTION = 0.15  # the imaging area covers at least this much of the frame
MIN_SIDE_FRACTION = 0.3  # and at least this fraction of each side


def full_box(shape: Sequence[int]) -> Box:
    return (0, 0, int(shape[0]), int(shape[1]))


def roi_from_us_regions(regions: Sequence[UltrasoundRegion], shape: Sequence[int]) -> Optional[Box]:
    """Largest-area tissue (2D) region, clipped to the image; None when there is none usable.

    Regions with unknown data type / spatial format are accepted (many writers leave them out);
    regions declared as something else (Doppler spectrum, M-mode, waveform) are not. A region
    reaching clearly past the pixel matrix means the header no longer matches the pixels (image
    resized or cropped after acquisition): it is ignored rather than trusted.
    """
    H, W = int(shape[0]), int(shape[1])
    best: Optional[Box] = None
    best_area = 0
    for r in regions or []:
        if r.data_type not in (None, TISSUE) or r.spatial_format not in (None, TISSUE):
            continue
        if r.x1 >= W + REGION_SLACK or r.y1 >= H + REGION_SLACK or r.x0 < -REGION_SLACK or r.y0 < -REGION_SLACK:
            continue
        x0, y0 = max(0, int(r.x0)), max(0, int(r.y0))
        x1, y1 = min(W, int(r.x1) + 1), min(H, int(r.y1) + 1)  # DICOM max coordinates are inclusive
        if y1 - y0 < 8 or x1 - x0 < 8:
            continue
        area = (y1 - y0) * (x1 - x0)
        if area > best_area:
            best, best_area = (y0, x0, y1, x1), area
    return best


def _odd(n: float) -> int:
    n = max(3, int(round(n)))
    return n if n % 2 else n + 1


def imaging_area_mask(gray: np.ndarray) -> Optional[np.ndarray]:
    """bool mask of the imaging area, or None when no convincing one is found.

    Two levels: *weak* = local mean (k x k box) above the background level, so faint deep tissue and
    the dark inside of lesions next to tissue stay in; *strong* = clearly echogenic pixels after a
    median, opened with a k-disc so that thin text, calipers and ticks vanish. A weak region is kept
    when it holds a good share of the strong pixels: text blocks have none, separate UI blocks have
    few, tissue halves split by a large anechoic cyst both have many.
    """
    g = to_uint8(to_grayscale(gray))
    H, W = g.shape
    if H < 16 or W < 16:
        return None
    side = min(H, W)
    k = _odd(side / 40)  # wider than text strokes, caliper crosses and tick marks
    background = min(float(np.percentile(g, 0.5)), 20.0)  # 0 for black surrounds, ~16 for video range
    weak = (cv2.blur(g.astype(np.float32), (k, k)) > background + WEAK_DELTA).astype(np.uint8)
    strong = (cv2.medianBlur(g, 5) > background + STRONG_DELTA).astype(np.uint8)
    strong = cv2.morphologyEx(strong, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    n, labels = cv2.connectedComponents(weak, connectivity=8)
    if n <= 1:
        return None
    score = np.bincount(labels[strong > 0], minlength=n)[:n]
    score[0] = 0
    if score.max() < MIN_COMPONENT_FRACTION * H * W:
        return None
    keep = np.flatnonzero(score >= KEEP_FRACTION * score.max())
    return np.isin(labels, keep)


def roi_from_image(gray: np.ndarray) -> Optional[Box]:
    """Bounding box of the imaging area (see module docstring), or None when not found.

    Deliberately conservative: faint deep tissue is kept, and UI text closer than ~1/80 of the
    image side to the imaging area (or joined to it by a marker) can end up inside the box.
    """
    mask = imaging_area_mask(gray)
    if mask is None:
        return None
    H, W = mask.shape
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    if (y1 - y0) < MIN_SIDE_FRACTION * H or (x1 - x0) < MIN_SIDE_FRACTION * W:
        return None
    m = max(2, int(round(min(H, W) / 100)))  # opening rounds off sector corners by ~1-2 px
    return (max(0, y0 - m), max(0, x0 - m), min(H, y1 + m), min(W, x1 + m))


def find_roi(image: np.ndarray, meta: Optional[ImageMeta] = None, mode: RoiMode = "auto") -> Box:
    """ROI box for ``image`` (any dtype, 2-D or colour): "none" -> full image; "dicom" -> largest
    tissue US region if present, else full; "auto" -> DICOM region, else image analysis, else full."""
    shape = np.shape(image)[:2]
    if mode == "none":
        return full_box(shape)
    if mode not in ("dicom", "auto"):
        raise ConfigError(f"unknown roi mode {mode!r} (none | dicom | auto)")
    if meta is not None and meta.us_regions:
        box = roi_from_us_regions(meta.us_regions, shape)
        if box is not None:
            return box
    if mode == "auto":
        box = roi_from_image(image)
        if box is not None:
            return box
    return full_box(shape)
