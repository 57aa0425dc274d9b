"""Per-frame value pipeline for DICOM: modality LUT/rescale -> VOI LUT/window -> MONOCHROME1 inversion,
or palette -> RGB. YBR/ICT/RCT -> RGB is already done by pydicom's decoders (``raw=False``).

pydicom supplies each step (apply_modality_lut, apply_voi_lut, apply_color_lut); what it does not
do is MONOCHROME1 inversion, decide the output dtype, or make the chain cheap per cine frame. For
integer data up to 16 bits the whole grey chain is evaluated once over every possible stored value
and then applied to each frame as a single table lookup: identical results, fixed cost per frame, and
a data-independent answer to "does this transform change values?" (which decides uint vs float32).
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

_COLOUR = {"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420", "YBR_PARTIAL_422"}


def _stored_dtype(ds: Dataset) -> np.dtype:
    bits = int(ds.BitsAllocated)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    if bits == 1:
        return np.dtype(np.uint8)
    nbytes = max(1, (bits + 7) // 8)
    nbytes = 1 if nbytes == 1 else 2 if nbytes == 2 else 4 if nbytes <= 4 else 8
    return np.dtype(f"{'i' if signed else 'u'}{nbytes}")


def _stored_range(ds: Dataset) -> tuple[int, int]:
    bits = int(ds.get("BitsStored") or ds.BitsAllocated)
    if int(ds.get("PixelRepresentation", 0) or 0) == 1:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _has_modality(ds: Dataset) -> bool:
    if "ModalityLUTSequence" in ds:
        return True
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    return slope != 1.0 or intercept != 0.0


def _has_voi(ds: Dataset) -> bool:
    return "VOILUTSequence" in ds or ("WindowCenter" in ds and "WindowWidth" in ds and ds.WindowWidth not in (None, ""))


_PALETTE_DATA = ("RedPaletteColorLookupTableData", "GreenPaletteColorLookupTableData", "BluePaletteColorLookupTableData", "AlphaPaletteColorLookupTableData")


def _palette_native_order(ds: Dataset) -> Dataset:
    """Work around pydicom 3.0 apply_color_lut reading non-segmented 16-bit palette data as little
    endian even in big-endian files (OBXXXX1A_expb.dcm decodes to 0..255 instead of 0..65280).
    Returns a small copy of the palette module with the LUT bytes in little-endian order."""
    little = ds.file_meta._tsyntax_encoding[1] if hasattr(ds, "file_meta") and "TransferSyntaxUID" in ds.file_meta else ds.original_encoding[1]
    if little is not False or "RedPaletteColorLookupTableData" not in ds:
        return ds
    desc = ds.RedPaletteColorLookupTableDescriptor
    entries = desc[0] or 2**16
    if len(ds.RedPaletteColorLookupTableData) != 2 * entries:  # 8-bit entries: no byte order
        return ds
    fixed = Dataset()
    for kw in ("RedPaletteColorLookupTableDescriptor", "GreenPaletteColorLookupTableDescriptor", "BluePaletteColorLookupTableDescriptor", "PhotometricInterpretation", "BitsStored", "BitsAllocated", "PixelRepresentation"):
        if kw in ds:
            setattr(fixed, kw, ds.get(kw))
    for kw in _PALETTE_DATA:
        if kw in ds:
            setattr(fixed, kw, np.frombuffer(ds.get(kw), dtype=">u2").astype("<u2").tobytes())
    return fixed


class FrameTransform:
    """Turns one decoded frame into display-ready values (grey: high = bright; colour: RGB).

    ``applied`` lists what the transform does, e.g. ['rescale', 'voi', 'invert'] or ['palette'].
    ``values_changed`` is True when grey values are mapped to new numbers (output then float32).
    """

    def __init__(self, ds: Dataset, voi: bool = True):
        self.photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
        self.applied: list[str] = []
        self.values_changed = False
        self._ds = ds
        self._lut: np.ndarray | None = None
        self._lut_lo = 0
        self._direct = None
        if self.photometric == "PALETTE COLOR":
            self.applied.append("palette")
            self._ds = _palette_native_order(ds)
            return
        if int(ds.get("SamplesPerPixel", 1) or 1) > 1 or self.photometric in _COLOUR:
            if self.photometric.startswith("YBR"):
                self.applied.append("ybr->rgb")
            return
        self._setup_grey(ds, voi)

    def _setup_grey(self, ds: Dataset, voi: bool) -> None:
        modality = _has_modality(ds)
        use_voi = voi and _has_voi(ds)
        invert = self.photometric == "MONOCHROME1"
        if modality:
            self.applied.append("rescale" if "ModalityLUTSequence" not in ds else "modality_lut")
        if use_voi:
            self.applied.append("voi")
        if invert:
            self.applied.append("invert")
        if not (modality or use_voi or invert):
            return
        stored = _stored_dtype(ds)
        lo, hi = _stored_range(ds)

        def chain(values: np.ndarray) -> np.ndarray:
            out = values
            if modality:
                out = apply_modality_lut(out, ds)
            if use_voi:
                out = apply_voi_lut(out, ds, index=0, prefer_lut=True)
            return out

        if stored.kind in "iu" and stored.itemsize <= 2 and hi - lo < 2**16:
            values = np.arange(lo, hi + 1, dtype=np.int64)
            out = np.asarray(chain(values), dtype=np.float64)
            self.values_changed = not np.array_equal(out, values)
            if invert:
                out = (out.min() + out.max()) - out
            self._lut = out.astype(np.float32 if self.values_changed else stored)
            self._lut_lo = lo
            return
        # >16-bit or float data: evaluate directly per frame (no table); monotonic chain -> range from endpoints
        ends = np.asarray(chain(np.array([lo, hi], dtype=np.float64)), dtype=np.float64)
        self.values_changed = modality or use_voi
        total = float(ends.min() + ends.max())

        def direct(frame: np.ndarray) -> np.ndarray:
            out = np.asarray(chain(frame), dtype=np.float64)
            if invert:
                out = total - out
            return out.astype(np.float32) if self.values_changed else out.astype(stored)

        self._direct = direct

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        frame = np.asarray(frame)
        if frame.dtype.byteorder not in ("=", "|"):
            frame = frame.astype(frame.dtype.newbyteorder("="))
        if self.photometric == "PALETTE COLOR":
            return np.ascontiguousarray(apply_color_lut(frame, self._ds))
        if self._lut is not None:
            idx = frame.astype(np.intp, copy=False) - self._lut_lo
            return np.take(self._lut, idx, mode="clip")
        if self._direct is not None:
            return self._direct(frame)
        return np.ascontiguousarray(frame)
