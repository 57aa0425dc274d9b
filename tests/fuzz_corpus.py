"""Seeded corpus of broken variants of real vendor files, built at test time (never committed).

Seeds are real ultrasound (and a few other) DICOMs shipped by pydicom / pydicom-data. Each variant
carries what a correct reader must do with it:

- ``fail``: inconsistent or unusable, must be reported as failed with a reason;
- ``flag``: must fail or succeed with a warning (e.g. calibration dropped) — never a silent OK;
- ``any``: may succeed (damage the format cannot detect, e.g. a flipped pixel byte), but must not
  crash, hang or blow up memory.

Used by tests/test_fuzz.py (a fast subset) and bench/fuzz.py (the whole corpus, >= 300 variants).
"""

from __future__ import annotations

import copy
import io
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

SEEDS = ["OBXXXX1A.dcm", "OBXXXX1A_rle.dcm", "OBXXXX1A_2frame.dcm", "OBXXXX1A_rle_2frame.dcm", "US1_UNCR.dcm",
         "US1_J2KR.dcm", "gdcm-US-ALOKA-16.dcm", "SC_rgb.dcm", "MR_small.dcm", "emri_small.dcm"]


@dataclass
class Variant:
    name: str
    expect: str  # fail | flag | any
    data: bytes
    suffix: str = ".dcm"

    def write(self, folder: Path) -> Path:
        p = Path(folder) / f"{self.name}{self.suffix}"
        p.write_bytes(self.data)
        return p


def seed_path(name: str) -> Optional[Path]:
    import pydicom

    dirs = [Path(pydicom.__file__).parent / "data" / "test_files"]
    try:
        import data_store

        dirs.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        pass
    for d in dirs:
        if (d / name).is_file():
            return d / name
    return None


def _save(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=False)
    return buf.getvalue()


def _regions(ds) -> list:
    return list(ds.get("SequenceOfUltrasoundRegions") or [])


def _header_mutations(ds) -> list[tuple[str, str, Callable]]:
    """(name, expect, mutate(ds) -> None or False when not applicable)."""
    from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, RLELossless

    ts = ds.file_meta.TransferSyntaxUID
    native = not ts.is_compressed
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    rgb = int(ds.get("SamplesPerPixel", 1)) == 3
    square = ds.Rows == ds.Columns
    has_regions = bool(_regions(ds))

    def setv(**kv):
        def f(d):
            for k, v in kv.items():
                setattr(d, k, v)
        return f

    def delete(*kws):
        def f(d):
            for k in kws:
                if k in d:
                    delattr(d, k)
        return f

    def region(dx, dy):
        def f(d):
            if not _regions(d):
                return False
            for r in d.SequenceOfUltrasoundRegions:
                r.PhysicalUnitsXDirection = 3
                r.PhysicalUnitsYDirection = 3
                r.PhysicalDeltaX, r.PhysicalDeltaY = dx, dy
        return f

    def planar(d):
        if not (native and rgb):
            return False
        d.PlanarConfiguration = 1 - int(d.get("PlanarConfiguration", 0) or 0)

    def ts_to(uid):
        def f(d):
            d.file_meta.TransferSyntaxUID = uid
        return f

    m = [
        ("rows_half", "fail" if native else "any", setv(Rows=ds.Rows // 2)),
        ("rows_double", "fail" if native else "any", setv(Rows=ds.Rows * 2)),
        ("cols_plus1", "fail" if native else "any", setv(Columns=ds.Columns + 1)),
        ("swap_rows_cols", "flag" if has_regions and not square else "any", setv(Rows=ds.Columns, Columns=ds.Rows)),
        ("rows_60000", "fail", setv(Rows=60000, Columns=60000)),
        ("rows_zero", "fail", setv(Rows=0)),
        ("frames_10000", "fail", setv(NumberOfFrames=10000)),
        ("frames_100", "fail", setv(NumberOfFrames=100)),
        ("frames_zero", "fail", setv(NumberOfFrames=0)),
        ("frames_text", "fail", setv(NumberOfFrames="abc")),
        ("frames_one_of_many", "fail" if native and frames > 1 else "any",
         setv(NumberOfFrames=1) if frames > 1 else (lambda d: False)),
        ("spp_1", "fail" if rgb else "any", setv(SamplesPerPixel=1)),
        ("spp_3", "fail" if not rgb else "any", setv(SamplesPerPixel=3)),
        ("spp_4", "fail", setv(SamplesPerPixel=4)),
        ("photometric_rgb", "fail" if not rgb else "any", setv(PhotometricInterpretation="RGB")),
        ("photometric_mono", "fail" if rgb else "any", setv(PhotometricInterpretation="MONOCHROME2")),
        ("planar_flip", "fail", planar),
        ("bits_12", "fail", setv(BitsAllocated=12)),
        ("bits_0", "fail", setv(BitsAllocated=0)),
        ("bits_16", "fail" if native and int(ds.BitsAllocated) == 8 else "any", setv(BitsAllocated=16, BitsStored=16, HighBit=15)),
        ("no_photometric", "fail", delete("PhotometricInterpretation")),
        ("no_spp", "fail", delete("SamplesPerPixel")),
        ("no_rows", "fail", delete("Rows")),
        ("no_bits", "fail", delete("BitsAllocated")),
        ("no_pixels", "fail", delete("PixelData")),
        ("delta_1e30", "flag", region(1e30, 1e30)),
        ("delta_aniso", "flag", region(1e-5, 10.0)),
        ("delta_inf", "flag", region(float("inf"), 0.01)),
        ("delta_nan", "flag", region(float("nan"), 0.01)),
        ("delta_negative", "any", region(-0.01, 0.01)),
        ("delta_zero", "any", region(0.0, 0.0)),
        ("pixel_spacing_1e30", "flag", setv(PixelSpacing=[1e30, 1e30])),
        ("pixel_spacing_text", "any", setv(PixelSpacing=["a", "b"])),
        ("rescale_inf", "flag" if not rgb else "any", setv(RescaleSlope="1e400", RescaleIntercept="0")),
        ("ts_jpeg_on_native", "fail" if native else "any", ts_to(JPEGBaseline8Bit)),
        ("ts_native_on_compressed", "fail" if not native else "any", ts_to(ExplicitVRLittleEndian)),
        ("ts_rle", "fail" if native else "any", ts_to(RLELossless)),
        ("person_name", "any", setv(PatientName="DoeJane", PatientID="PID-1")),
    ]
    return m


def deep_sequence_bytes(raw: bytes, depth: int) -> Optional[bytes]:
    """``raw`` (explicit VR little endian) with a private sequence nested ``depth`` levels deep inserted
    just before Pixel Data. Built as bytes: pydicom's own Dataset/Sequence objects need memory that
    grows very fast with nesting, which is not what is under test."""
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(raw), defer_size=256, force=True)
    ts = getattr(ds.file_meta, "TransferSyntaxUID", None)
    if ts is None or ts.is_implicit_VR or not ts.is_little_endian or ts.is_deflated:
        return None
    elem = ds.get_item(0x7FE00010, keep_deferred=True)
    tell = getattr(elem, "value_tell", None) if elem is not None else None
    if tell is None:
        return None
    start = tell - 12
    if raw[start:start + 4] != b"\xe0\x7f\x10\x00":
        return None
    sq = b"\xdf\x7f\x00\x10SQ\x00\x00\xff\xff\xff\xff"
    item, item_end, sq_end = b"\xfe\xff\x00\xe0\xff\xff\xff\xff", b"\xfe\xff\x0d\xe0\0\0\0\0", b"\xfe\xff\xdd\xe0\0\0\0\0"
    nested = (sq + item) * depth + (item_end + sq_end) * depth
    return raw[:start] + nested + raw[start:]


def _byte_mutations(raw: bytes, rng: random.Random, n_flips: int, n_trunc: int) -> list[tuple[str, str, bytes]]:
    out = []
    for depth in (300, 3000):
        deep = deep_sequence_bytes(raw, depth)
        if deep is not None:
            out.append((f"deep_{depth}", "any", deep))
    for i in range(n_trunc):
        frac = [0.05, 0.3, 0.6, 0.9, 0.999][i % 5]
        out.append((f"trunc_{int(frac * 1000):03d}", "any", raw[: max(int(len(raw) * frac), 1)]))
    for i in range(n_flips):
        b = bytearray(raw)
        pos = rng.randrange(128, min(len(b), 4096)) if i % 2 == 0 else rng.randrange(128, len(b))
        for k in range(rng.randint(1, 8)):
            j = min(pos + k, len(b) - 1)
            b[j] = rng.randrange(256)
        out.append((f"flip_{i:02d}", "any", bytes(b)))
    out.append(("appended_garbage", "any", raw + bytes(rng.randrange(256) for _ in range(777))))
    out.append(("zero_header", "any", raw[:132] + b"\0" * 256 + raw[388:]))
    return out


def _other_formats(rng: random.Random) -> list[Variant]:
    import cv2
    import nibabel as nib

    out = []

    def nii(arr, name, expect, zooms=(0.5, 0.5, 2.0)):
        data = bytearray(nib.Nifti1Image(arr, np.diag([0.5, 0.5, 2.0, 1.0])).to_bytes())
        data[80:92] = np.asarray(zooms, "<f4").tobytes()  # pixdim[1..3], whatever the affine says
        out.append(Variant(name, expect, bytes(data), ".nii"))

    base = np.zeros((48, 40, 2), np.float32)
    base[10:30, 10:25] = 100
    nii(np.full((48, 40, 2), np.nan, np.float32), "nifti_all_nan", "fail")
    partial = base.copy()
    partial[0, 0, 0] = np.inf
    nii(partial, "nifti_one_inf", "fail")
    nii(base, "nifti_zero_zoom", "any", zooms=(0.0, 0.0, 1.0))  # nibabel reads zero pixdim as 1 (and warns)
    nii(base, "nifti_huge_zoom", "flag", zooms=(1e30, 1e30, 1.0))
    good = nib.Nifti1Image(base, np.eye(4)).to_bytes()
    out.append(Variant("nifti_truncated", "fail", good[: len(good) // 2], ".nii"))
    hdr = bytearray(good)
    hdr[42:44] = (30000).to_bytes(2, "little")  # dim[1] = 30000
    hdr[44:46] = (30000).to_bytes(2, "little")
    out.append(Variant("nifti_declares_30000sq", "fail", bytes(hdr), ".nii"))
    img = (np.arange(60 * 80) % 251).astype(np.uint8).reshape(60, 80)
    ok, png = cv2.imencode(".png", img)
    png = png.tobytes()
    out.append(Variant("png_truncated", "fail", png[: len(png) // 2], ".png"))
    b = bytearray(png)
    b[16:20] = (60000).to_bytes(4, "big")  # IHDR width
    b[20:24] = (60000).to_bytes(4, "big")
    out.append(Variant("png_declares_60000sq", "fail", bytes(b), ".png"))
    out.append(Variant("png_garbage", "fail", png[:8] + bytes(rng.randrange(256) for _ in range(300)), ".png"))
    return out


def build_corpus(seed: int = 0, flips: int = 8, truncations: int = 5, seeds: Optional[list[str]] = None) -> list[Variant]:
    """All variants (deterministic for a given ``seed``); seeds that are not installed are skipped."""
    import pydicom

    rng = random.Random(seed)
    variants: list[Variant] = []
    for name in seeds or SEEDS:
        p = seed_path(name)
        if p is None:
            continue
        raw = p.read_bytes()
        base = pydicom.dcmread(p)
        stem = Path(name).stem
        for mname, expect, mutate in _header_mutations(base):
            ds = copy.deepcopy(base)
            try:
                if mutate(ds) is False:
                    continue
                data = _save(ds)
            except Exception:  # noqa: BLE001 - pydicom refuses to write some values: not a variant then
                continue
            variants.append(Variant(f"{stem}__{mname}", expect, data))
        for mname, expect, data in _byte_mutations(raw, rng, flips, truncations):
            variants.append(Variant(f"{stem}__{mname}", expect, data))
    variants.extend(_other_formats(rng))
    return variants


def verdict(variant: Variant, result: dict) -> str:
    """'reason' (failed with words), 'ok', 'flagged' (ok + warning) or 'silent_ok' (inconsistent but OK)."""
    status = result.get("status", "ok" if result.get("ok") else "failed")
    if status == "failed":
        return "reason"
    warned = bool(result.get("warnings"))
    if variant.expect == "fail" or (variant.expect == "flag" and not warned):
        return "silent_ok"
    return "flagged" if warned else "ok"
