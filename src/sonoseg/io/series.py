"""DICOM series (a folder of slices, or one multi-frame file) -> Volume in RAS+.

Slices are ordered by geometry: ImagePositionPatient projected on the slice normal (the cross product
of the two ImageOrientationPatient direction cosines). File names and InstanceNumber are only a
fallback when positions are missing. The affine is built from the sorted positions themselves, so
gantry tilt / shear is kept exactly, and DICOM's LPS is flipped to RAS (x and y negated).

Voxel values are modality values (rescale slope/intercept applied; no VOI windowing, no MONOCHROME1
inversion: those are display steps, volumes feed measurement and conversion).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut

from sonoseg.errors import InputError
from sonoseg.io.detect import detect_format, find_inputs
from sonoseg.io.dicom import check_pixel_header, iter_raw_frames, meta_from_header, read_header
from sonoseg.io.types import Volume

log = logging.getLogger(__name__)

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_ORIENT_TOL = 1e-4


@dataclass
class _Slice:
    path: Path
    ds: Dataset
    frames: int


def _floats(value, n: int) -> np.ndarray | None:
    try:
        arr = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return arr if arr.shape == (n,) and np.all(np.isfinite(arr)) else None


def _instance(ds: Dataset) -> float:
    try:
        return float(ds.get("InstanceNumber"))
    except (TypeError, ValueError):
        return float("inf")


def _pixel_spacing(ds: Dataset) -> tuple[float, float]:
    ps = _floats(ds.get("PixelSpacing") or [], 2)
    if ps is not None and np.all(ps > 0):
        return float(ps[0]), float(ps[1])
    meta_spacing = meta_from_header("", ds).pixel_spacing_mm  # US regions / imager spacing
    if meta_spacing:
        return meta_spacing
    log.warning("no pixel spacing in header: assuming 1 mm")
    return 1.0, 1.0


def _slice_gap(ds: Dataset) -> float:
    for kw in ("SpacingBetweenSlices", "SliceThickness"):
        try:
            v = float(ds.get(kw))
            if v > 0:
                return v
        except (TypeError, ValueError):
            continue
    return 1.0


def _orientation(ds: Dataset) -> tuple[np.ndarray, np.ndarray] | None:
    iop = _floats(ds.get("ImageOrientationPatient") or [], 6)
    if iop is None:
        return None
    x, y = iop[:3], iop[3:]
    if np.linalg.norm(x) < 1e-6 or np.linalg.norm(y) < 1e-6:
        return None
    return x / np.linalg.norm(x), y / np.linalg.norm(y)


def lps_affine(x_dir, y_dir, row_mm, col_mm, origin, step) -> np.ndarray:
    """Voxel (x=column, y=row, z=slice) -> LPS mm."""
    m = np.eye(4)
    m[:3, 0] = np.asarray(x_dir) * col_mm
    m[:3, 1] = np.asarray(y_dir) * row_mm
    m[:3, 2] = step
    m[:3, 3] = origin
    return m


def _rescale(frame: np.ndarray, ds: Dataset) -> np.ndarray:
    if "ModalityLUTSequence" in ds:
        return apply_modality_lut(frame, ds)
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    if slope == 1.0 and intercept == 0.0:
        return frame
    return frame.astype(np.float64) * slope + intercept


def _output_dtype(frames: list[np.ndarray]) -> np.dtype:
    """Keep integers when every slice stayed integral (e.g. CT: slope 1, intercept -1024 -> int16)."""
    dtypes = {f.dtype for f in frames}
    if all(np.issubdtype(d, np.integer) for d in dtypes):
        return np.result_type(*dtypes)
    if all(np.all(np.mod(f, 1) == 0) for f in frames):
        lo = min(float(f.min()) for f in frames)
        hi = max(float(f.max()) for f in frames)
        for cand in (np.uint8, np.int16, np.uint16, np.int32):
            info = np.iinfo(cand)
            if info.min <= lo and hi <= info.max:
                return np.dtype(cand)
    return np.dtype(np.float32)


def _stack(frames: list[np.ndarray], where: Path) -> np.ndarray:
    if any(f.ndim != 2 for f in frames):
        raise InputError(where, "colour (multi-sample) slices cannot form a scalar volume")
    dtype = _output_dtype(frames)
    return np.stack([f.astype(dtype, copy=False) for f in frames])


def _collect(source: str | Path | Sequence[str | Path]) -> tuple[Path, list[Path]]:
    if isinstance(source, (str, Path)):
        where = Path(source)
        if where.is_file():
            return where, [where]
        if not where.is_dir():
            raise InputError(where, "no such file or folder")
        try:
            files = [f for f in find_inputs([where], recursive=True) if detect_format(f) == "dicom"]
        except InputError:
            files = []
        if not files:
            raise InputError(where, "no DICOM files in folder")
        return where, files
    files = [Path(f) for f in source]
    if not files:
        raise InputError("(no files)", "empty file list")
    return files[0].parent, files


def _read_slices(files: Iterable[Path], where: Path) -> list[_Slice]:
    slices, failed = [], []
    for f in files:
        try:
            ds = read_header(f)
            slices.append(_Slice(f, ds, check_pixel_header(f, ds)))
        except InputError as exc:
            failed.append(exc)
            log.warning("skipping %s", exc)
    if not slices:
        first = f" (first: {failed[0].reason})" if failed else ""
        raise InputError(where, f"no readable DICOM images{first}")
    if failed:
        log.warning("%s: %d file(s) skipped", where, len(failed))
    return slices


def _pick_series(slices: list[_Slice], where: Path, series_uid: str | None) -> list[_Slice]:
    groups: dict[str, list[_Slice]] = defaultdict(list)
    for s in slices:
        groups[str(s.ds.get("SeriesInstanceUID", ""))].append(s)
    if series_uid is not None:
        if series_uid not in groups:
            raise InputError(where, f"series {series_uid} not found ({len(groups)} series present)")
        return groups[series_uid]
    if len(groups) > 1:
        sizes = sorted((len(v) for v in groups.values()), reverse=True)
        log.warning("%s: %d series found (sizes %s); using the largest", where, len(groups), sizes)
    return max(groups.values(), key=len)


def _sort_geometric(slices: list[_Slice], where: Path) -> tuple[list[_Slice], np.ndarray | None, tuple | None]:
    """Sort by position along the normal; returns (sorted slices, positions or None, orientation)."""
    orients = [_orientation(s.ds) for s in slices]
    positions = [_floats(s.ds.get("ImagePositionPatient") or [], 3) for s in slices]
    if any(o is None for o in orients) or any(p is None for p in positions):
        log.warning("%s: missing ImagePositionPatient/ImageOrientationPatient, sorting by InstanceNumber", where)
        ordered = sorted(slices, key=lambda s: (_instance(s.ds), s.path.name))
        return ordered, None, orients[0] if all(o is not None for o in orients) else None
    x0, y0 = orients[0]
    for x, y in orients[1:]:
        if np.abs(x - x0).max() > _ORIENT_TOL or np.abs(y - y0).max() > _ORIENT_TOL:
            raise InputError(where, "slices have different ImageOrientationPatient (not one volume)")
    normal = np.cross(x0, y0)
    proj = np.array([float(p @ normal) for p in positions])
    order = np.argsort(proj, kind="stable")
    if len(proj) > 1 and np.min(np.diff(proj[order])) < 1e-4:
        raise InputError(where, "several slices share one position (multiple echoes/phases/series?); pass series_uid or split them")
    # Ascending along the normal, unless InstanceNumber runs the other way consistently: then keep
    # the instance order, which is equally valid geometrically and preserves the writer's slice order.
    inst = np.array([_instance(slices[i].ds) for i in order])
    if len(order) > 1 and np.all(np.isfinite(inst)) and np.all(np.diff(inst) < 0):
        order = order[::-1]
    ordered = [slices[i] for i in order]
    return ordered, np.stack([positions[i] for i in order]), (x0, y0)


def _uniform_step(positions: np.ndarray, where: Path) -> np.ndarray:
    """Mean step between sorted slice positions; refuses gaps that differ by >10% (a missing slice
    or two stacks in one folder), where any single affine would misplace voxels."""
    gaps = np.linalg.norm(np.diff(positions, axis=0), axis=1)
    median = max(float(np.median(gaps)), 1e-6)
    if np.abs(gaps - median).max() > 0.1 * median:
        raise InputError(where, f"slice gaps vary from {gaps.min():.4g} to {gaps.max():.4g} mm (missing slices or several stacks?)")
    if np.ptp(gaps) > 1e-3 * median + 1e-4:
        log.warning("%s: slightly non-uniform slice spacing (%.4g..%.4g mm); using the mean", where, gaps.min(), gaps.max())
    return (positions[-1] - positions[0]) / (len(positions) - 1)


def _first_frame(s: _Slice) -> np.ndarray:
    gen = iter_raw_frames(s.path, s.ds)
    try:
        return next(gen)
    finally:
        gen.close()


def _volume_from_slices(slices: list[_Slice], where: Path) -> Volume:
    shapes = {(int(s.ds.Rows), int(s.ds.Columns)) for s in slices}
    if len(shapes) > 1:
        raise InputError(where, f"slices have different sizes {sorted(shapes)}")
    if any(s.frames != 1 for s in slices):
        raise InputError(where, "series mixes multi-frame files with other slices")
    ordered, positions, orient = _sort_geometric(slices, where)
    first = ordered[0].ds
    row_mm, col_mm = _pixel_spacing(first)
    x_dir, y_dir = orient if orient is not None else (np.array([1.0, 0, 0]), np.array([0, 1.0, 0]))
    if positions is not None:
        origin = positions[0]
        if len(positions) > 1:
            step = _uniform_step(positions, where)
        else:
            step = np.cross(x_dir, y_dir) * _slice_gap(first)
    else:
        origin = _floats(first.get("ImagePositionPatient") or [], 3)
        origin = np.zeros(3) if origin is None else origin
        step = np.cross(x_dir, y_dir) * _slice_gap(first)
    frames = [_rescale(_first_frame(s), s.ds) for s in ordered]
    array = _stack(frames, where)
    return _make_volume(array, lps_affine(x_dir, y_dir, row_mm, col_mm, origin, step), where, first)


def _volume_from_multiframe(s: _Slice, where: Path) -> Volume:
    """One multi-frame file: per-frame PlanePositionSequence when present (enhanced CT/MR), else frames
    stacked at SpacingBetweenSlices/SliceThickness (or 1) along the normal."""
    ds = s.ds
    row_mm, col_mm = _pixel_spacing(ds)
    orient = _orientation(ds)
    x_dir, y_dir = orient if orient is not None else (np.array([1.0, 0, 0]), np.array([0, 1.0, 0]))
    positions = []
    for item in ds.get("PerFrameFunctionalGroupsSequence", None) or []:
        pps = item.get("PlanePositionSequence")
        positions.append(_floats(pps[0].get("ImagePositionPatient") or [], 3) if pps else None)
    frames = [_rescale(f, ds) for f in iter_raw_frames(s.path, ds)]
    if len(positions) == len(frames) and all(p is not None for p in positions) and len(frames) > 1:
        normal = np.cross(x_dir, y_dir)
        order = np.argsort([float(p @ normal) for p in positions], kind="stable")
        frames = [frames[i] for i in order]
        pos = np.stack([positions[i] for i in order])
        origin, step = pos[0], _uniform_step(pos, where)
    else:
        origin = _floats(ds.get("ImagePositionPatient") or [], 3)
        origin = np.zeros(3) if origin is None else origin
        step = np.cross(x_dir, y_dir) * _slice_gap(ds)
    return _make_volume(_stack(frames, where), lps_affine(x_dir, y_dir, row_mm, col_mm, origin, step), where, ds)


def _make_volume(array: np.ndarray, lps: np.ndarray, where: Path, first: Dataset) -> Volume:
    ras = LPS_TO_RAS @ lps
    spacing = tuple(float(np.linalg.norm(lps[:3, i])) for i in (2, 1, 0))
    meta = meta_from_header(where, first, frames=int(array.shape[0]))
    meta.affine = ras.tolist()
    meta.pixel_spacing_mm = (spacing[1], spacing[2])
    return Volume(array=array, spacing=spacing, affine=ras, meta=meta)


def load_series(source: str | Path | Sequence[str | Path], series_uid: str | None = None) -> Volume:
    """A folder (searched recursively), a list of slice files, or one multi-frame file -> Volume.

    Unreadable files are skipped with a warning; with several series the largest is used unless
    ``series_uid`` picks one.
    """
    where, files = _collect(source)
    slices = _pick_series(_read_slices(files, where), where, series_uid)
    if len(slices) == 1 and slices[0].frames > 1:
        return _volume_from_multiframe(slices[0], where)
    return _volume_from_slices(slices, where)
