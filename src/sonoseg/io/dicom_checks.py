"""Header-vs-data consistency of DICOM pixel data, decided before (or instead of) a full decode.

Broken or hostile files must not come out as a silent OK: Rows halved with twice the data, a wrong
SamplesPerPixel, NumberOfFrames promising frames that are not there, a region calibration lying outside
the image (Rows/Columns swapped), PlanarConfiguration contradicting the bytes. Each check either
passes or raises InputError with the inconsistency in words.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from sonoseg.errors import InputError

_ONE_SAMPLE = {"MONOCHROME1", "MONOCHROME2", "PALETTE COLOR"}
_THREE_SAMPLES = {"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420", "YBR_PARTIAL_422", "HSV",
                  "ARGB", "CMYK"}


def check_rescale(p: Path, ds: Dataset) -> None:
    """RescaleSlope/Intercept, when present, must be finite numbers (1e400 parses as infinity)."""
    import math

    for kw in ("RescaleSlope", "RescaleIntercept"):
        if kw in ds and ds.get(kw) not in (None, ""):
            try:
                v = float(ds.get(kw))
            except (TypeError, ValueError):
                raise InputError(p, f"{kw} is not a number") from None
            if not math.isfinite(v):
                raise InputError(p, f"{kw} is not finite")


def check_photometric(p: Path, ds: Dataset) -> None:
    """PhotometricInterpretation and SamplesPerPixel present and agreeing with each other."""
    if "PhotometricInterpretation" not in ds or not str(ds.get("PhotometricInterpretation") or "").strip():
        raise InputError(p, "missing PhotometricInterpretation (required to interpret the pixels)")
    if "SamplesPerPixel" not in ds or ds.get("SamplesPerPixel") in (None, ""):
        raise InputError(p, "missing SamplesPerPixel (required to interpret the pixels)")
    pi = str(ds.PhotometricInterpretation).strip().upper()
    try:
        spp = int(ds.SamplesPerPixel)
    except (TypeError, ValueError):
        raise InputError(p, "invalid SamplesPerPixel") from None
    if pi in _ONE_SAMPLE and spp != 1:
        raise InputError(p, f"SamplesPerPixel={spp} contradicts PhotometricInterpretation {pi} (needs 1)")
    if pi in _THREE_SAMPLES and spp != 3:
        raise InputError(p, f"SamplesPerPixel={spp} contradicts PhotometricInterpretation {pi} (needs 3)")
    if spp not in (1, 3):
        raise InputError(p, f"unsupported SamplesPerPixel={spp}")
    if spp == 3 and "PlanarConfiguration" in ds and ds.PlanarConfiguration not in (0, 1, "0", "1"):
        raise InputError(p, f"invalid PlanarConfiguration={ds.PlanarConfiguration}")


def check_native_length(p: Path, length: int, expected: int, frames: int) -> None:
    """Uncompressed pixel data must hold what Rows x Columns x Samples x Bits x Frames declare.
    Shorter is truncation; a whole extra frame's worth (or more) means the geometry is wrong (Rows
    halved, NumberOfFrames too small...); less than a frame of trailing bytes is tolerated padding."""
    frame_bytes = max(expected // max(frames, 1), 1)
    if length < expected:
        if frames > 1 and length >= frame_bytes:
            raise InputError(p, f"NumberOfFrames={frames} but the pixel data holds only {length // frame_bytes} "
                                f"frame(s) ({length} of {expected} bytes)")
        raise InputError(p, f"truncated pixel data: {length} of {expected} bytes")
    if length - expected >= frame_bytes:
        raise InputError(p, f"pixel data holds {length} bytes, {length / frame_bytes:.3g} times one declared frame, "
                            f"but the header declares {frames} frame(s) of {frame_bytes} bytes "
                            "(Rows/Columns/NumberOfFrames/SamplesPerPixel inconsistent)")


def check_encapsulated_frames(p: Path, tell: int | None, frames: int, little: bool = True,
                              value: bytes | None = None) -> None:
    """Compressed data: the Basic Offset Table (when present) must list NumberOfFrames frames, and there
    must be at least as many fragments as frames. Reads item headers only (from the file at ``tell``,
    or from ``value`` when the element is already in memory), never decodes a fragment."""
    import io

    from pydicom.encaps import parse_basic_offsets, parse_fragments

    end = "<" if little else ">"
    try:
        with (io.BytesIO(value) if value is not None else open(p, "rb")) as fh:
            if value is None:
                if tell is None:
                    return
                fh.seek(tell)
            offsets = parse_basic_offsets(fh, endianness=end)
            n_frag, _ = parse_fragments(fh, endianness=end)
    except Exception:  # noqa: BLE001 - a damaged item structure is reported by the decoder with its reason
        return
    if offsets and len(offsets) != frames:
        raise InputError(p, f"NumberOfFrames={frames} but the offset table lists {len(offsets)} frames")
    if n_frag < frames:
        raise InputError(p, f"NumberOfFrames={frames} but the pixel data holds only {n_frag} compressed fragment(s)")


def regions_outside(ds: Dataset, regions) -> str | None:
    """Ultrasound regions are drawn on the image: a box clearly outside Columns x Rows means the image
    was resized after calibration or its size in the header is wrong (e.g. Rows and Columns swapped);
    either way the calibration cannot be trusted. Returns the reason, or None."""
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    for r in regions:
        if r.x0 < 0 or r.y0 < 0 or r.x1 < r.x0 or r.y1 < r.y0:
            continue  # malformed box: no calibration comes from it anyway
        if r.x1 >= cols * 1.02 + 2 or r.y1 >= rows * 1.02 + 2:
            return (f"an ultrasound region ({r.x1 + 1} x {r.y1 + 1} px) lies outside the image ({cols} x {rows}): "
                    "Rows/Columns do not match the calibration")
    return None


def check_planar(p: Path, ds: Dataset, tell: int | None, value: bytes | None = None) -> None:
    """8-bit native colour: compare the declared sample layout with the other one on the first frame.
    In the right layout the image is spatially smooth; read in the wrong layout, each row is cut into
    pieces of different image parts (or three neighbouring pixels become one), so its total variation is
    much larger. Only a clear difference (2x) is reported: real planar and interleaved files pass."""
    if (tell is None and value is None) or int(ds.get("SamplesPerPixel", 1) or 1) != 3 \
            or int(ds.get("BitsAllocated", 8)) != 8:
        return
    rows, cols = int(ds.Rows), int(ds.Columns)
    n = rows * cols * 3
    if n < 3 * 64:
        return
    if value is not None:
        buf = np.frombuffer(value, dtype=np.uint8)[:n]
    else:
        with open(p, "rb") as fh:
            fh.seek(tell)
            buf = np.frombuffer(fh.read(n), dtype=np.uint8)
    if buf.size < n:
        return
    inter = buf.reshape(rows, cols, 3).astype(np.int16)
    planar = buf.reshape(3, rows, cols).transpose(1, 2, 0).astype(np.int16)

    def score(a: np.ndarray) -> float:  # spatial total variation (not the sample spread: colour bars
        return float(np.abs(np.diff(a, axis=0)).mean() + np.abs(np.diff(a, axis=1)).mean())  # are legit)

    declared = int(ds.get("PlanarConfiguration", 0) or 0)
    s_inter, s_planar = score(inter), score(planar)
    mine, other = (s_planar, s_inter) if declared == 1 else (s_inter, s_planar)
    if mine > 2.0 * other + 2.0:
        raise InputError(p, f"PlanarConfiguration={declared} contradicts the pixel data (the samples look "
                            f"{'interleaved' if declared == 1 else 'planar'})")


def file_size(p: Path) -> int:
    return os.path.getsize(p)
