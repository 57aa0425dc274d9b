"""Clinical measurements of segmented structures (lesion size, fetal biometry) from a 2D mask.

Conventions (documented once, used by every field):

* Positions (``centroid``, ``bbox``, diameter endpoints, ellipse ``center``) are pixel coordinates
  ``[row, col]`` of the input mask (pixel centres at integer values), so they can be drawn on the image.
* Sizes (areas, lengths, diameters) are physical when a pixel spacing ``(row_mm, col_mm)`` is given
  (``unit == "mm"``, areas in mm²) and in pixels otherwise (``unit == "px"``). Anisotropic spacing is
  handled by mapping boundary points to physical space *before* any length, hull or fit is computed.
* The boundary of a structure follows one of two contour conventions (``contour=``), chosen to match
  how the mask was made; holes are ignored for boundary quantities, area is the pixel count in both:

  - ``"edge"`` (default): the *outer pixel edge*, the sub-pixel contour halfway between inside and
    outside pixel centres (marching squares at level 0.5, foreground 8-connected). Right for masks
    made by setting every pixel whose centre lies inside the shape (a segmentation network's
    thresholded output, ``skimage.draw.ellipse``/``polygon``, most label tools' filled polygons).
  - ``"centre"``: the *pixel-centre boundary*, the closed chain through the centres of the outermost
    foreground pixels (``cv2.findContours``). Right for masks whose outline pixels were drawn *on*
    the curve (``cv2.ellipse``/``cv2.drawContours`` filled with their outline, HC18-style annotation
    ellipses): there the outer pixel edge lies half a pixel outside the drawn curve and reads about
    +0.8 % high on a 60 px-radius ellipse.

  ``tests/test_biometry.py`` draws ellipses of known axes and spacing both ways: each convention
  reproduces the circumference within 0.5 % on the masks it is meant for.

Why not plain ``cv2.arcLength`` / ``skimage.measure.perimeter``: a digital (staircase) boundary
overestimates the length of a smooth curve by ~5.5 % (chain-code bias), and the Crofton estimator has no
notion of anisotropic pixels. A 5-vertex circular moving average of the marching-squares contour removes
the staircase (ellipses/circles within ~0.5 %, straight edges unchanged; corners are rounded off by about
one pixel).
"""

from __future__ import annotations

import math
from typing import Iterable, Optional, Sequence

import cv2
import numpy as np
from skimage import measure as skmeasure

_SMOOTH_VERTICES = 5
_MAX_CHORD_SAMPLES = 20000  # a 1e-5 x 10 mm calibration once asked for 18.9 GiB of chord samples


def ramanujan_circumference(a: float, b: float) -> float:
    """Ellipse circumference from semi-axes, Ramanujan's second approximation (relative error ~1e-11 at
    axis ratio 5:3, < 2e-5 even at 10:1)."""
    a, b = float(a), float(b)
    if a + b <= 0:
        return 0.0
    h = ((a - b) / (a + b)) ** 2
    return math.pi * (a + b) * (1.0 + 3.0 * h / (10.0 + math.sqrt(4.0 - 3.0 * h)))


def _check_spacing(spacing) -> Optional[tuple[float, float]]:
    if spacing is None:
        return None
    sr, sc = (float(v) for v in spacing)
    if not (math.isfinite(sr) and math.isfinite(sc) and sr > 0 and sc > 0):
        raise ValueError(f"pixel spacing must be two positive numbers (row, col), got {spacing!r}")
    return sr, sc


def _label_values(mask: np.ndarray) -> list[int]:
    if mask.dtype == bool:
        return [1] if mask.any() else []
    if np.issubdtype(mask.dtype, np.floating):
        if not np.all(np.isfinite(mask)) or not np.array_equal(mask, np.round(mask)):
            raise ValueError("mask has non-integer values: threshold probabilities before measuring")
    vals = np.unique(mask)
    if vals.size and vals.min() < 0:
        raise ValueError("mask has negative labels")
    return [int(v) for v in vals if v != 0]


def _outer_boundary(comp: np.ndarray) -> np.ndarray:
    """Closed outer contour (N×2, row/col, last vertex not repeated) of one 8-connected component."""
    padded = np.pad(comp, 1).astype(np.float32)
    contours = skmeasure.find_contours(padded, 0.5, fully_connected="high")
    if not contours:  # cannot happen for a non-empty component, kept for safety
        rr, cc = np.nonzero(comp)
        return np.stack([rr, cc], 1).astype(float)

    def enclosed(c: np.ndarray) -> float:
        x, y = c[:, 1], c[:, 0]
        return abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / 2.0

    outer = max(contours, key=enclosed)
    return outer[:-1] - 1.0  # drop repeated closing vertex, undo padding


def _centre_boundary(comp: np.ndarray) -> np.ndarray:
    """Closed chain (N×2, row/col) through the centres of the outermost pixels of one component."""
    cs, _ = cv2.findContours(comp.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not cs:
        rr, cc = np.nonzero(comp)
        return np.stack([rr, cc], 1).astype(float)
    return max(cs, key=len)[:, 0, ::-1].astype(float)


CONTOURS = ("edge", "centre")


def _smooth_closed(points: np.ndarray, window: int) -> np.ndarray:
    n = len(points)
    if n < 2 * window or window <= 1:
        return points
    kernel = np.ones(window) / window
    ext = np.vstack([points[-window:], points, points[:window]])
    out = np.stack([np.convolve(ext[:, i], kernel, mode="same") for i in range(2)], axis=1)
    return out[window : window + n]


def _closed_length(points: np.ndarray) -> float:
    if len(points) < 2:
        return 0.0
    d = np.diff(np.vstack([points, points[:1]]), axis=0)
    return float(np.hypot(d[:, 0], d[:, 1]).sum())


def _feret(phys: np.ndarray) -> tuple[float, int, int]:
    """Max distance between boundary points via their convex hull: (length, index_a, index_b)."""
    if len(phys) < 2:
        return 0.0, 0, 0
    hull = cv2.convexHull(phys[:, ::-1].astype(np.float32), returnPoints=False)[:, 0]
    hp = phys[hull]
    best, ia, ib = -1.0, 0, 0
    for start in range(0, len(hp), 512):  # chunked brute force: hulls are a few hundred points
        block = hp[start : start + 512]
        d2 = ((block[:, None, :] - hp[None, :, :]) ** 2).sum(-1)
        k = int(np.argmax(d2))
        i, j = divmod(k, len(hp))
        if d2[i, j] > best:
            best, ia, ib = float(d2[i, j]), int(hull[start + i]), int(hull[j])
    return math.sqrt(best), ia, ib


def _perpendicular_chord(phys: np.ndarray, axis: np.ndarray, step: float):
    """Longest chord perpendicular to ``axis`` (unit vector) across the closed polygon ``phys``.

    Lines perpendicular to the axis are sampled about every ``step`` along it (ends included); on
    each line the chord runs between the outermost boundary crossings (what a caliper placed across
    the structure reads, concavities included). Returns (length, p0, p1) in the coordinates of ``phys``.
    """
    perp = np.array([-axis[1], axis[0]])
    u = phys @ axis
    v = phys @ perp
    u0, u1 = u.min(), u.max()
    if u1 - u0 < step or len(phys) < 3:
        # degenerate (tiny / line-like): fall back to the width of the projection
        i, j = int(np.argmin(v)), int(np.argmax(v))
        return float(v[j] - v[i]), phys[i], phys[j]
    n = int(min(math.ceil((u1 - u0) / step) + 1, _MAX_CHORD_SAMPLES))  # bounded whatever the spacing
    samples = np.linspace(u0, u1, max(3, n))
    ua, va = u, v
    ub, vb = np.roll(u, -1), np.roll(v, -1)
    lo_u, hi_u = np.minimum(ua, ub), np.maximum(ua, ub)
    lo = np.searchsorted(samples, lo_u, side="left")
    hi = np.searchsorted(samples, hi_u, side="left")
    counts = np.maximum(hi - lo, 0)
    counts[ua == ub] = 0
    total = int(counts.sum())
    if total == 0:
        i, j = int(np.argmin(v)), int(np.argmax(v))
        return float(v[j] - v[i]), phys[i], phys[j]
    edge = np.repeat(np.arange(len(u)), counts)
    offs = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    sidx = lo[edge] + offs
    t = (samples[sidx] - ua[edge]) / (ub[edge] - ua[edge])
    vv = va[edge] + t * (vb[edge] - va[edge])
    vmin = np.full(len(samples), np.inf)
    vmax = np.full(len(samples), -np.inf)
    np.minimum.at(vmin, sidx, vv)
    np.maximum.at(vmax, sidx, vv)
    width = np.where(np.isfinite(vmin), vmax - vmin, -1.0)
    k = int(np.argmax(width))
    us = samples[k]
    return float(width[k]), us * axis + vmin[k] * perp, us * axis + vmax[k] * perp


def _ellipse(phys: np.ndarray, comp_rc: np.ndarray, sr: float, sc: float) -> dict:
    """Ellipse fit in physical space (x = col, y = row). cv2.fitEllipse on the boundary when it has
    >= 5 vertices, else an equal-second-moment ellipse of the pixel squares."""
    method = "contour_fit"
    fit = None
    if len(phys) >= 5:
        try:
            (cx, cy), (w, h), ang = cv2.fitEllipse(phys[:, ::-1].astype(np.float32))
            if all(math.isfinite(x) for x in (cx, cy, w, h, ang)) and w > 0 and h > 0:
                fit = (cx, cy, w, h, ang)
        except cv2.error:
            fit = None
    if fit is not None:
        cx, cy, w, h, ang = fit
        if w >= h:
            major, minor, theta = w, h, ang
        else:
            major, minor, theta = h, w, ang + 90.0
    else:
        method = "moments"
        ys = comp_rc[:, 0] * sr
        xs = comp_rc[:, 1] * sc
        cx, cy = float(xs.mean()), float(ys.mean())
        # covariance of the union of pixel squares = covariance of centres + one square's (d²/12)
        cov = np.cov(np.stack([xs, ys]), bias=True) if len(xs) > 1 else np.zeros((2, 2))
        cov = cov + np.diag([sc * sc / 12.0, sr * sr / 12.0])
        evals, evecs = np.linalg.eigh(cov)
        major, minor = 4.0 * math.sqrt(max(evals[1], 0.0)), 4.0 * math.sqrt(max(evals[0], 0.0))
        theta = math.degrees(math.atan2(evecs[1, 1], evecs[0, 1]))
    a, b = major / 2.0, minor / 2.0
    return {
        "center": [cy / sr, cx / sc],
        "major_axis": major,
        "minor_axis": minor,
        "orientation_deg": theta % 180.0,
        "circumference": ramanujan_circumference(a, b),
        "area": math.pi * a * b,
        "method": method,
    }


def _r(x, nd: int = 4):
    """JSON-safe rounding (native floats, None for non-finite)."""
    if isinstance(x, dict):
        return {k: _r(v, nd) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_r(v, nd) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return round(x, nd) if math.isfinite(x) else None
    return x


def _measure_component(comp: np.ndarray, offset: tuple[int, int], sr: float, sc: float,
                       contour: str = "edge") -> dict:
    r0, c0 = offset
    rr, cc = np.nonzero(comp)
    area_px = int(rr.size)
    boundary = _outer_boundary(comp) if contour == "edge" else _centre_boundary(comp)  # local row/col
    scale = np.array([sr, sc])
    phys = boundary * scale
    perimeter = _closed_length(_smooth_closed(phys, _SMOOTH_VERTICES))
    area = area_px * sr * sc

    dmax, ia, ib = _feret(phys)
    if dmax > 0:
        axis = (phys[ib] - phys[ia]) / dmax
        dperp, q0, q1 = _perpendicular_chord(phys, axis, step=min(sr, sc) / 4.0)
    else:
        dperp, q0, q1 = 0.0, phys[0], phys[0]

    origin = np.array([r0, c0], dtype=float)
    comp_rc = np.stack([rr, cc], 1).astype(float)
    ell = _ellipse(phys, comp_rc, sr, sc)
    ell["center"] = (np.array(ell["center"]) + origin).tolist()
    return {
        "area": area,
        "area_px": area_px,
        "centroid": [float(rr.mean()) + r0, float(cc.mean()) + c0],
        "bbox": [int(rr.min()) + r0, int(cc.min()) + c0, int(rr.max()) + r0, int(cc.max()) + c0],
        "bbox_height": (int(rr.max()) - int(rr.min()) + 1) * sr,
        "bbox_width": (int(cc.max()) - int(cc.min()) + 1) * sc,
        "perimeter": perimeter,
        "max_diameter": dmax,
        "max_diameter_endpoints": [(phys[ia] / scale + origin).tolist(), (phys[ib] / scale + origin).tolist()],
        "perpendicular_diameter": dperp,
        "perpendicular_diameter_endpoints": [(q0 / scale + origin).tolist(), (q1 / scale + origin).tolist()],
        "equivalent_diameter": 2.0 * math.sqrt(area / math.pi),
        "circularity": (4.0 * math.pi * area / perimeter**2) if perimeter > 0 else None,
        "ellipse": ell,
    }


def measure_mask(
    mask: np.ndarray,
    spacing: Optional[Sequence[float]] = None,
    *,
    names: Optional[dict[int, str]] = None,
    min_area_px: int = 1,
    connectivity: int = 8,
    contour: str = "edge",
) -> list[dict]:
    """Measure every connected structure of a 2D binary mask or label map.

    One dict per connected component of each non-zero label, largest area first within a label.
    ``spacing`` is the pixel size ``(row_mm, col_mm)``; without it sizes are in pixels. Fields:

    ``label``, ``name`` (when ``names`` has the label), ``component`` (1-based, by decreasing area),
    ``unit`` ("mm"|"px"), ``area`` (unit²; pixel count × pixel area), ``area_px``, ``centroid``
    [row, col], ``bbox`` [row_min, col_min, row_max, col_max] (inclusive), ``bbox_height`` /
    ``bbox_width`` (extent along rows / columns, unit; depth/width for "taller-than-wide"),
    ``perimeter`` (outer boundary length), ``max_diameter`` (Feret: longest distance between
    boundary points) with ``max_diameter_endpoints``, ``perpendicular_diameter`` with endpoints —
    the longest chord perpendicular to the max diameter, between the outermost boundary crossings of
    that line (the bidimensional "short axis" of WHO/RECIST-style lesion reporting; for an ellipse it
    is the minor axis), ``equivalent_diameter`` (circle of equal area), ``circularity`` (4πA/P²) and
    ``ellipse``: {center [row, col], major_axis, minor_axis (full axis lengths, unit),
    orientation_deg (major axis, degrees from the +column direction towards +row, in [0, 180) measured
    in physical space), circumference (Ramanujan II on the fitted semi-axes: the ultrasound head
    circumference), area (πab), method}.
    ``contour`` is the boundary convention (``"edge"`` | ``"centre"``, see the module docstring) used
    by every boundary quantity (perimeter, diameters, ellipse); it is recorded in each record.
    Everything is JSON-safe (native ints/floats/lists, None for undefined values).
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"measure_mask expects a 2D mask, got shape {mask.shape}")
    if connectivity not in (4, 8):
        raise ValueError("connectivity must be 4 or 8")
    contour = {"center": "centre"}.get(contour, contour)
    if contour not in CONTOURS:
        raise ValueError(f"contour must be one of {CONTOURS}, got {contour!r}")
    sp = _check_spacing(spacing)
    sr, sc = sp if sp is not None else (1.0, 1.0)
    unit = "mm" if sp is not None else "px"
    out: list[dict] = []
    for label in _label_values(mask):
        binary = (mask == label).astype(np.uint8) if mask.dtype != bool else mask.astype(np.uint8)
        n, lab, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=connectivity)
        order = sorted(range(1, n), key=lambda i: (-stats[i, cv2.CC_STAT_AREA], stats[i, cv2.CC_STAT_TOP],
                                                     stats[i, cv2.CC_STAT_LEFT]))
        comp_id = 0
        for i in order:
            if stats[i, cv2.CC_STAT_AREA] < max(min_area_px, 1):
                continue
            x, y, w, h = (int(stats[i, k]) for k in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP,
                                                     cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT))
            comp = lab[y : y + h, x : x + w] == i
            comp_id += 1
            rec = {"label": label}
            if names and label in names:
                rec["name"] = str(names[label])
            rec.update({"component": comp_id, "unit": unit, "contour": contour})
            rec.update(_measure_component(comp, (y, x), sr, sc, contour))
            out.append(_r(rec))
    return out


def measurements_summary(items: Iterable[dict]) -> dict:
    """Per-image summary: count, total area, per-label counts/areas and the largest structure's
    key sizes (what a report line needs). JSON-safe; label keys are strings."""
    items = list(items)
    if not items:
        return {"count": 0, "unit": None, "total_area": 0.0, "labels": {}, "largest": None}
    unit = items[0].get("unit")
    labels: dict[str, dict] = {}
    for it in items:
        key = str(it["label"])
        entry = labels.setdefault(key, {"count": 0, "total_area": 0.0, "max_area": 0.0})
        if "name" in it:
            entry["name"] = it["name"]
        entry["count"] += 1
        entry["total_area"] += float(it["area"])
        entry["max_area"] = max(entry["max_area"], float(it["area"]))
    big = max(items, key=lambda it: float(it["area"]))
    largest = {k: big.get(k) for k in ("label", "component", "area", "max_diameter", "perpendicular_diameter",
                                        "equivalent_diameter", "perimeter", "centroid")}
    ell = big.get("ellipse") or {}
    largest["ellipse_circumference"] = ell.get("circumference")
    if "name" in big:
        largest["name"] = big["name"]
    return _r({"count": len(items), "unit": unit, "total_area": sum(float(i["area"]) for i in items),
               "labels": labels, "largest": largest})
