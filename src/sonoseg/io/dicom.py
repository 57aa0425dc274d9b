"""DICOM ingest on pydicom 3: header-only metadata, frame-by-frame decoding, whole-image loading.

Decoding uses ``pydicom.pixels.iter_pixels(path)``, which reads one frame's bytes/fragments at a time
from the open file, so a long cine never needs all frames decoded in memory (``Dataset.pixel_array``
decodes everything at once). Compressed syntaxes come from the pylibjpeg plugins and pyjpegls.
"""

from __future__ import annotations

import logging
import os
import struct
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import get_decoder, iter_pixels
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from sonoseg.errors import InputError
from sonoseg.io import dicom_checks
from sonoseg.io.budget import check_declared, sane_spacing
from sonoseg.io.dicom_pixels import FrameTransform
from sonoseg.io.types import ImageMeta, LoadedImage
from sonoseg.io.us_regions import parse_us_regions, spacing_from_regions

log = logging.getLogger(__name__)

_DEFER = 256 * 1024  # elements larger than this (pixel data) stay on disk while reading the header
_PIXEL_DATA = 0x7FE00010
_FLOAT_PIXELS = (0x7FE00008, 0x7FE00009)
_UNDEFINED = 0xFFFFFFFF

# Shared functional groups (enhanced multi-frame) -> top-level keywords the pipeline understands
_SHARED = {
    "PixelValueTransformationSequence": ("RescaleSlope", "RescaleIntercept", "RescaleType"),
    "FrameVOILUTSequence": ("WindowCenter", "WindowWidth", "VOILUTFunction"),
    "PixelMeasuresSequence": ("PixelSpacing", "SliceThickness", "SpacingBetweenSlices"),
    "PlaneOrientationSequence": ("ImageOrientationPatient",),
}


def _short(exc: BaseException) -> str:
    """One line in words: plugin errors from pydicom are multi-line ("...all available plugins:\n  x: why");
    quoted values are redacted (they may come from header fields)."""
    from sonoseg.errors import reason
    from sonoseg.redact import redact

    if isinstance(exc, (MemoryError, RecursionError, OSError, AttributeError, KeyError, IndexError, EOFError)):
        return reason(exc)
    msg = " ".join(line.strip() for line in str(exc).splitlines()[:2] if line.strip())
    msg = msg if len(msg) <= 200 else msg[:197] + "..."
    return redact(msg) if msg else reason(exc)


def _encoding_syntax(ds: Dataset) -> UID | None:
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if implicit is None:
        return None
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _lift_shared_groups(ds: Dataset) -> None:
    seq = ds.get("SharedFunctionalGroupsSequence")
    if not seq:
        return
    for seq_kw, keywords in _SHARED.items():
        items = seq[0].get(seq_kw)
        if not items:
            continue
        for kw in keywords:
            if kw in items[0] and kw not in ds:
                setattr(ds, kw, items[0].get(kw))


def read_header(path: str | Path) -> Dataset:
    """Parse everything except the pixel data (deferred, so its length is still known)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "no such file")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(p, defer_size=_DEFER)
            has_meta = True
        except InvalidDicomError:
            has_meta = False
            try:
                ds = pydicom.dcmread(p, defer_size=_DEFER, force=True)
            except RecursionError:
                raise InputError(p, "DICOM sequences nested too deeply (corrupt or hostile file)") from None
            except Exception as exc:  # noqa: BLE001 - anything here means "not DICOM"
                raise InputError(p, f"not a DICOM file ({_short(exc)})") from exc
        except (EOFError, OSError, ValueError, KeyError, TypeError, struct.error) as exc:
            raise InputError(p, f"unreadable DICOM header, file truncated or corrupt ({_short(exc)})") from exc
        except RecursionError:
            raise InputError(p, "DICOM sequences nested too deeply (corrupt or hostile file)") from None
    eof = [str(w.message) for w in caught if "end of file" in str(w.message).lower()]
    if eof:
        raise InputError(p, "truncated file (end of file reached before the data ended)")
    if len(ds) == 0:
        raise InputError(p, "no DICOM data elements (empty or corrupt file)")
    if not has_meta and ("SOPClassUID" not in ds and "Rows" not in ds and "PixelData" not in ds):
        raise InputError(p, "not a DICOM file (no DICM preamble and no recognisable DICOM elements)")
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        ts = _encoding_syntax(ds)
        if ts is None:
            raise InputError(p, "not a DICOM file (cannot determine its encoding)")
        if meta is None:
            ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ts
        ds._sonoseg_no_meta = True  # pixel decoding must then go through the Dataset
    try:
        _lift_shared_groups(ds)
    except RecursionError:
        raise InputError(p, "DICOM sequences nested too deeply (corrupt or hostile file)") from None
    except Exception as exc:  # noqa: BLE001 - malformed functional groups
        raise InputError(p, f"malformed functional group sequences ({_short(exc)})") from exc
    return ds


def transfer_syntax(ds: Dataset) -> UID:
    return UID(str(ds.file_meta.TransferSyntaxUID))


def _pixel_length(ds: Dataset) -> tuple[int | None, int | None]:
    """(declared length, byte offset of the value) without loading deferred pixel data."""
    elem = ds.get_item(_PIXEL_DATA, keep_deferred=True)
    if elem is None:
        return None, None
    value = getattr(elem, "value", None)
    if value is not None and isinstance(value, (bytes, bytearray)):
        return len(value), None
    return getattr(elem, "length", None), getattr(elem, "value_tell", None)


def _positive(*values) -> bool:
    import math

    return all(v is not None and math.isfinite(v) and v > 0 for v in values)


def _loaded_value(ds: Dataset) -> bytes | None:
    """Pixel Data bytes when already in memory (small files are not deferred), else None."""
    value = getattr(ds.get_item(_PIXEL_DATA, keep_deferred=True), "value", None)
    return value if isinstance(value, (bytes, bytearray)) else None


def check_pixel_header(path: str | Path, ds: Dataset) -> int:
    """Validate that ``ds`` has decodable pixel data; return the number of frames."""
    p = Path(path)
    if _PIXEL_DATA not in ds:
        if any(t in ds for t in _FLOAT_PIXELS):
            raise InputError(p, "float pixel data is not supported")
        sop = ds.get("SOPClassUID")
        name = UID(str(sop)).name if sop else ""
        hint = ": file truncated?" if "Image Storage" in name else ""
        raise InputError(p, f"no pixel data ({name}{hint})" if name else "no pixel data")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows <= 0 or cols <= 0:
        raise InputError(p, f"invalid image size Rows={rows} Columns={cols}")
    if "BitsAllocated" not in ds:
        raise InputError(p, "missing BitsAllocated")
    try:
        bits = int(ds.BitsAllocated)
    except (TypeError, ValueError):
        raise InputError(p, "invalid BitsAllocated") from None
    if bits not in (1, 8, 16, 32, 64):
        raise InputError(p, f"unsupported BitsAllocated={bits}")
    dicom_checks.check_photometric(p, ds)
    dicom_checks.check_rescale(p, ds)
    ts = transfer_syntax(ds)
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise InputError(p, f"unsupported transfer syntax {ts.name} ({ts})") from None
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "a decoding plugin"
        raise InputError(p, f"no decoder installed for {ts.name} (needs {missing})")
    raw_frames = ds.get("NumberOfFrames", 1)
    try:
        frames = int(raw_frames) if raw_frames not in (None, "") else 1
    except (TypeError, ValueError):
        raise InputError(p, f"invalid NumberOfFrames {raw_frames!r}") from None
    if frames <= 0:
        raise InputError(p, f"zero frames (NumberOfFrames = {raw_frames})")
    check_declared(p, rows, cols, frames, int(ds.SamplesPerPixel))  # before anything is decoded
    length, tell = _pixel_length(ds)
    if length == 0:
        raise InputError(p, "empty pixel data")
    if length is not None and length != _UNDEFINED:
        if tell is not None:
            size = os.path.getsize(p)
            if tell + length > size:
                raise InputError(p, f"truncated file: pixel data needs {length} bytes, only {max(size - tell, 0)} present")
        if not ts.is_compressed:
            dicom_checks.check_native_length(p, length, get_expected_length(ds, "bytes"), frames)
            if not getattr(ds, "_sonoseg_no_meta", False) and not ts.is_deflated:
                dicom_checks.check_planar(p, ds, tell, _loaded_value(ds))
    if ts.is_encapsulated and not ts.is_deflated:
        dicom_checks.check_encapsulated_frames(p, tell, frames, little=ts.is_little_endian, value=_loaded_value(ds))
    return frames


def calibration(ds: Dataset) -> tuple[tuple[float, float] | None, str | None, list[str]]:
    """(pixel spacing (row, col) in mm, its source keyword, notes) of a header: PixelSpacing, else the
    ultrasound region calibration, else ImagerPixelSpacing; dropped (with a note) when implausible or
    when the regions do not fit the image. The one place measurements and the DICOM SEG read it from."""
    regions = parse_us_regions(ds)
    spacing, source = None, None

    def _pair(kw):
        v = ds.get(kw)
        try:
            return (float(v[0]), float(v[1])) if v is not None and len(v) == 2 else None
        except (TypeError, ValueError, IndexError):
            return None

    ps, ips = _pair("PixelSpacing"), _pair("ImagerPixelSpacing")
    if ps is not None and ps[0] > 0 and ps[1] > 0:
        spacing, source = ps, "PixelSpacing"
    elif (sp := spacing_from_regions(regions)) is not None:
        spacing, source = sp, "SequenceOfUltrasoundRegions"
    elif ips is not None and ips[0] > 0 and ips[1] > 0:
        spacing, source = ips, "ImagerPixelSpacing"
    notes = []
    if source == "SequenceOfUltrasoundRegions" and (why := dicom_checks.regions_outside(ds, regions)):
        notes.append(f"calibration dropped: {why}; sizes are in pixels")
        spacing, source = None, None
    if spacing is None and any(r.unit_x == 3 and r.unit_y == 3 and not _positive(r.physical_delta_x, r.physical_delta_y)
                               for r in regions):
        notes.append("ultrasound region calibration ignored: PhysicalDeltaX/Y are not positive finite numbers; "
                     "sizes are in pixels")
    if spacing is not None:
        spacing, why = sane_spacing(spacing)
        if why:
            notes.append(f"calibration from {source} dropped: {why}; sizes are in pixels")
            source = None
    return spacing, source, notes


def meta_from_header(path: str | Path, ds: Dataset, frames: int | None = None) -> ImageMeta:
    """ImageMeta from a parsed header. Never copies patient identifiers."""
    regions = parse_us_regions(ds)
    spacing, source, notes = calibration(ds)
    ts = transfer_syntax(ds)

    def _str(kw):
        v = ds.get(kw)
        return str(v) if v not in (None, "") else None

    if frames is None:
        try:
            frames = max(int(ds.get("NumberOfFrames", 1) or 1), 0)
        except (TypeError, ValueError):
            frames = 1
    return ImageMeta(
        path=str(path),
        format="dicom",
        modality=_str("Modality"),
        rows=int(ds.get("Rows", 0) or 0),
        columns=int(ds.get("Columns", 0) or 0),
        frames=frames,
        samples_per_pixel=int(ds.get("SamplesPerPixel", 1) or 1),
        photometric=_str("PhotometricInterpretation"),
        transfer_syntax=str(ts),
        transfer_syntax_name=ts.name,
        bits_stored=int(ds.BitsStored) if ds.get("BitsStored") else None,
        pixel_spacing_mm=spacing,
        spacing_source=source,
        study_uid=_str("StudyInstanceUID"),
        series_uid=_str("SeriesInstanceUID"),
        sop_uid=_str("SOPInstanceUID"),
        sop_class_uid=_str("SOPClassUID"),
        us_regions=regions,
        warnings=notes,
        frame_time_ms=_frame_time_ms(ds),
    )


def _frame_time_ms(ds: Dataset) -> float | None:
    """Nominal time between frames of a cine (ms): FrameTime, else the mean of FrameTimeVector
    (its first entry is 0), else 1000 / CineRate or RecommendedDisplayFrameRate."""
    try:
        ft = ds.get("FrameTime")
        if ft not in (None, "") and float(ft) > 0:
            return float(ft)
        ftv = ds.get("FrameTimeVector")
        if ftv is not None and len(ftv) > 1:
            vals = [float(v) for v in list(ftv)[1:]]
            if all(v > 0 for v in vals):
                return sum(vals) / len(vals)
        for kw in ("CineRate", "RecommendedDisplayFrameRate"):
            rate = ds.get(kw)
            if rate not in (None, "") and float(rate) > 0:
                return 1000.0 / float(rate)
    except (TypeError, ValueError):
        return None
    return None


def read_dicom_meta(path: str | Path) -> ImageMeta:
    """Header-only metadata; raises InputError if the file has no decodable pixel data."""
    ds = read_header(path)
    frames = check_pixel_header(path, ds)
    return meta_from_header(path, ds, frames)


def _streamable(ds: Dataset) -> bool:
    """iter_pixels(path) reads frames straight from disk; it cannot for files without File Meta or
    for deflated datasets, which must be parsed whole into a Dataset first."""
    return not getattr(ds, "_sonoseg_no_meta", False) and not transfer_syntax(ds).is_deflated


def _full_dataset(path: Path, ds: Dataset) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = pydicom.dcmread(path, force=True)
    if getattr(ds, "_sonoseg_no_meta", False):
        full.file_meta = ds.file_meta
    return full


def _quiet_next(it: Iterator[np.ndarray]) -> np.ndarray | None:
    """next() with pydicom's warnings silenced only for the call itself: a catch_warnings block
    must never span a ``yield`` (it would leak the filter into the caller while suspended)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return next(it)
        except StopIteration:
            return None


def iter_raw_frames(path: str | Path, ds: Dataset) -> Iterator[np.ndarray]:
    """Decoded frames before any value transform (colour already RGB); errors become InputError."""
    p = Path(path)
    n = 0
    it = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            source = p if _streamable(ds) else _full_dataset(p, ds)
        it = iter_pixels(source)
        while True:
            try:
                raw = _quiet_next(it)
            except (ValueError, AttributeError, KeyError) as exc:
                # Some files with inconsistent encodings (e.g. explicit VR declared, implicit used)
                # only parse through dcmread's heuristics: retry once via the Dataset.
                if n or not isinstance(source, Path):
                    raise
                log.debug("%s: streaming decode failed (%s), retrying via Dataset", p, _short(exc))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    source = _full_dataset(p, ds)
                it = iter_pixels(source)
                continue
            if raw is None:
                break
            yield raw
            n += 1
    except (InputError, GeneratorExit):
        raise
    except Exception as exc:  # noqa: BLE001 - decoder errors come in many types
        raise InputError(p, f"cannot decode frame {n} ({_short(exc)})") from exc
    finally:
        if it is not None:
            it.close()  # closes the file iter_pixels opened
    if n == 0:
        raise InputError(p, "zero frames decoded")


def _iter(path: Path, ds: Dataset, frames: int, voi: bool) -> Iterator[np.ndarray]:
    transform = FrameTransform(ds, voi=voi)
    n = 0
    for raw in iter_raw_frames(path, ds):
        yield transform(raw)
        n += 1
    if n < frames:
        raise InputError(path, f"NumberOfFrames={frames} but only {n} frame(s) present in the pixel data")


def iter_dicom_frames(path: str | Path, voi: bool = True) -> Iterator[np.ndarray]:
    """Yield display-ready frames one at a time (HxW or HxWx3)."""
    p = Path(path)
    ds = read_header(p)
    frames = check_pixel_header(p, ds)
    yield from _iter(p, ds, frames, voi)


def load_dicom(path: str | Path, voi: bool = True) -> LoadedImage:
    """All frames: HxW[x3] for one frame, FxHxW[x3] for several. Frames are decoded one by one into a
    preallocated array, so peak memory is the result plus one frame."""
    p = Path(path)
    ds = read_header(p)
    frames = check_pixel_header(p, ds)
    meta = meta_from_header(p, ds, frames)
    out: np.ndarray | None = None
    n = 0
    for frame in _iter(p, ds, frames, voi):
        if out is None:
            out = np.empty((frames,) + frame.shape, dtype=frame.dtype)
        if n >= frames:
            break
        out[n] = frame
        n += 1
    assert out is not None
    if n < frames:
        out = out[:n]
        meta.frames = n
    pixels = out[0] if frames == 1 else out
    return LoadedImage(pixels=pixels, meta=meta)
