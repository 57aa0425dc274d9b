"""Dataset layout: ``root/images/<stem>.<ext>``, ``root/masks/<stem>.<ext>``, optional ``labels.csv``.

Images may be PNG/JPEG/BMP/TIFF, NIfTI, or DICOM (``.dcm`` or no extension, recognised by content
via :func:`sonoseg.io.detect.detect_format`); masks may be any of these too (typically PNG or NIfTI). An image and its mask
pair by file stem (``.nii.gz`` counts as one extension). ``labels.csv`` gives per-image class and
patient/group id under flexible column names, because public datasets all name them differently.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from sonoseg.errors import InputError

IMAGE_DIR = "images"
MASK_DIR = "masks"
LABELS_FILE = "labels.csv"

RASTER_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DICOM_EXTS = (".dcm", ".dicom", ".dic", ".ima")
NIFTI_EXTS = (".nii.gz", ".nii")
KNOWN_EXTS = RASTER_EXTS + DICOM_EXTS + NIFTI_EXTS

_NOT_IMAGES = {"DICOMDIR", "Thumbs.db", "LOCKFILE", "VERSION"}

# Accepted column names in labels.csv (case-insensitive), first match wins.
IMAGE_COLUMNS = ("image", "case", "stem", "name", "filename", "file", "image_id")
CLASS_COLUMNS = ("class", "cls", "label", "category")
GROUP_COLUMNS = ("group", "patient", "patient_id", "patientid", "subject", "subject_id")
# Pixel spacing (mm): one column "ROW_MM" or "ROW_MM,COL_MM", or a row and a column column.
SPACING_COLUMNS = ("spacing", "spacing_mm", "pixel_spacing", "pixel_spacing_mm")
SPACING_ROW_COLUMNS = ("spacing_row", "spacing_row_mm", "row_spacing")
SPACING_COL_COLUMNS = ("spacing_col", "spacing_col_mm", "col_spacing", "column_spacing")


@dataclass(frozen=True)
class Sample:
    """One image of a dataset. ``cls``/``group`` come from labels.csv (None when not given)."""

    stem: str
    image_path: Path
    mask_path: Optional[Path] = None
    cls: Optional[str] = None
    group: Optional[str] = None
    spacing: Optional[tuple[float, float]] = None  # (row, col) mm from labels.csv
    source: Optional[str] = None  # dataset label in a multi-source training (DataSource.label())


@dataclass
class LabelTable:
    """Parsed labels.csv: stem -> (class, group), plus what was odd about it."""

    path: Path
    rows: dict[str, tuple[Optional[str], Optional[str]]]
    image_column: str
    class_column: Optional[str]
    group_column: Optional[str]
    duplicate_stems: list[str] = field(default_factory=list)
    spacing: dict[str, tuple[float, float]] = field(default_factory=dict)  # stem -> (row, col) mm


@dataclass
class DatasetScan:
    """Everything found on disk, before deciding what is a problem (see validate.py)."""

    root: Path
    images: dict[str, Path]
    masks: dict[str, Path]
    has_mask_dir: bool
    duplicate_images: dict[str, list[Path]] = field(default_factory=dict)  # stem -> >= 2 files
    duplicate_masks: dict[str, list[Path]] = field(default_factory=dict)
    ignored: list[Path] = field(default_factory=list)  # files that are not images
    labels: Optional[LabelTable] = None


def natural_key(s: str) -> list:
    """'case 2' sorts before 'case 10'."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]


def natural_sorted(stems) -> list[str]:
    return sorted(stems, key=natural_key)


def file_stem(path: str | Path) -> str:
    """Name without its image extension; ``x.nii.gz`` -> ``x``; DICOM UIDs without extension keep their dots."""
    name = Path(path).name
    low = name.lower()
    for ext in KNOWN_EXTS:
        if low.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return name


def is_image_file(path: Path) -> bool:
    """Known extension, or content that sonoseg.io recognises (extension-less DICOM exports).

    A broken file with an image extension still counts, so validation can report it as unreadable."""
    if not path.is_file() or path.name.startswith(".") or path.name in _NOT_IMAGES:
        return False
    if path.name.lower().endswith(KNOWN_EXTS):
        return True
    from sonoseg.io.detect import detect_format

    try:
        detect_format(path)
    except InputError:
        return False
    return True


def scan_dir(d: Path) -> tuple[dict[str, Path], dict[str, list[Path]], list[Path]]:
    """The image files of folder ``d`` by stem: (stem -> file, stems with several files, other files ignored)."""
    found: dict[str, list[Path]] = {}
    ignored: list[Path] = []
    for p in sorted(d.iterdir()):
        if p.is_dir():
            continue
        if is_image_file(p):
            found.setdefault(file_stem(p), []).append(p)
        elif not p.name.startswith("."):
            ignored.append(p)
    unique = {s: ps[0] for s, ps in found.items()}
    dups = {s: ps for s, ps in found.items() if len(ps) > 1}
    return unique, dups, ignored


def pick_column(header: list[str], candidates: tuple[str, ...]) -> Optional[str]:
    norm = {h.strip().lower(): h for h in header}
    for c in candidates:
        if c in norm:
            return norm[c]
    return None


def _clean(value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    v = value.strip()
    return v or None


def read_csv_records(path: str | Path, what: str) -> tuple[list[str], list[dict]]:
    """(header, rows) of a CSV (BOM tolerated); unreadable -> one-line InputError naming ``what``."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise InputError(path, f"{what} not found") from exc
    except OSError as exc:
        raise InputError(path, f"cannot read {what} ({exc.strerror or exc})") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # one stray byte (a Windows-1252 'é' from a spreadsheet) must not stop every verb
        import logging

        logging.getLogger(__name__).warning("%s: not valid UTF-8 (byte 0x%02x at offset %d); read as Windows-1252",
                                            path, raw[exc.start], exc.start)
        text = raw.decode("cp1252", errors="replace")
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        return list(reader.fieldnames or []), list(reader)
    except csv.Error as exc:
        raise InputError(path, f"cannot read {what} ({exc})") from exc


def read_labels(path: str | Path) -> LabelTable:
    """Parse a labels CSV. Image values may carry a folder or an extension ('images/a.png' -> 'a')."""
    path = Path(path)
    header, records = read_csv_records(path, "labels file")
    img_col = pick_column(header, IMAGE_COLUMNS)
    if img_col is None:
        raise InputError(path, f"no image column (expected one of {', '.join(IMAGE_COLUMNS)}; found {', '.join(header) or 'none'})")
    cls_col = pick_column(header, CLASS_COLUMNS)
    grp_col = pick_column(header, GROUP_COLUMNS)
    sp_col = pick_column(header, SPACING_COLUMNS)
    sr_col, sc_col = pick_column(header, SPACING_ROW_COLUMNS), pick_column(header, SPACING_COL_COLUMNS)
    rows: dict[str, tuple[Optional[str], Optional[str]]] = {}
    spacing: dict[str, tuple[float, float]] = {}
    dups: list[str] = []
    for rec in records:
        raw = _clean(rec.get(img_col))
        if raw is None:
            continue
        stem = file_stem(raw.replace("\\", "/").split("/")[-1])
        entry = (_clean(rec.get(cls_col)) if cls_col else None, _clean(rec.get(grp_col)) if grp_col else None)
        if stem in rows:
            dups.append(stem)
        rows[stem] = entry
        text = _clean(rec.get(sp_col)) if sp_col else None
        if text is None and sr_col and _clean(rec.get(sr_col)):
            text = ",".join(v for v in (_clean(rec.get(sr_col)), _clean(rec.get(sc_col)) if sc_col else None) if v)
        if text is not None:
            from sonoseg.errors import ConfigError
            from sonoseg.io.spacing import parse_spacing

            try:
                spacing[stem] = parse_spacing(text)
            except ConfigError as exc:
                raise InputError(path, f"image {raw!r}: {exc}") from None
    return LabelTable(path, rows, img_col, cls_col, grp_col, dups, spacing)


def scan_dataset(root: str | Path) -> DatasetScan:
    """List images, masks and labels without opening any image. Raises InputError if ``images/`` is missing."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "dataset folder not found")
    img_dir = root / IMAGE_DIR
    if not img_dir.is_dir():
        raise InputError(root, f"no '{IMAGE_DIR}/' folder (expected {IMAGE_DIR}/ and {MASK_DIR}/)")
    images, dup_images, ignored = scan_dir(img_dir)
    mask_dir = root / MASK_DIR
    masks: dict[str, Path] = {}
    dup_masks: dict[str, list[Path]] = {}
    if mask_dir.is_dir():
        masks, dup_masks, ignored_m = scan_dir(mask_dir)
        ignored += ignored_m
    labels_path = root / LABELS_FILE
    labels = read_labels(labels_path) if labels_path.is_file() else None
    return DatasetScan(root, images, masks, mask_dir.is_dir(), dup_images, dup_masks, ignored, labels)


def samples_from_scan(scan: DatasetScan, require_masks: bool = False) -> list[Sample]:
    if scan.duplicate_images:
        stem, paths = next(iter(scan.duplicate_images.items()))
        raise InputError(paths[1], f"two images share the stem {stem!r} ({paths[0].name}, {paths[1].name})")
    if not scan.images:
        raise InputError(scan.root / IMAGE_DIR, "no image files")
    out = []
    for stem in natural_sorted(scan.images):
        mask = scan.masks.get(stem)
        if mask is None and require_masks:
            raise InputError(scan.images[stem], f"no mask with stem {stem!r} in {MASK_DIR}/")
        cls, group = (scan.labels.rows.get(stem, (None, None)) if scan.labels else (None, None))
        sp = scan.labels.spacing.get(stem) if scan.labels else None
        out.append(Sample(stem, scan.images[stem], mask, cls, group, sp))
    return out


def discover_dataset(root: str | Path, require_masks: bool = False) -> list[Sample]:
    """Samples in natural stem order. Images without a mask get ``mask_path=None`` unless
    ``require_masks``; run :func:`sonoseg.data.validate_dataset` for a full problem listing."""
    return samples_from_scan(scan_dataset(root), require_masks=require_masks)


def image_shape(pixels: np.ndarray, meta=None) -> tuple[int, int]:
    """(rows, cols) of a decoded image: from the metadata when set, else HxW[xC] / FxHxW[xC] pixels."""
    if meta is not None and getattr(meta, "rows", 0) and getattr(meta, "columns", 0):
        return int(meta.rows), int(meta.columns)
    a = np.asarray(pixels)
    if a.ndim == 2:
        return a.shape[0], a.shape[1]
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        return a.shape[0], a.shape[1]
    if a.ndim >= 3:
        return a.shape[1], a.shape[2]
    raise ValueError(f"not an image array (shape {a.shape})")


def to_label_map(
    pixels: np.ndarray,
    path: str | Path,
    expect_shape: Optional[tuple[int, int]] = None,
    fmt: Optional[str] = None,
) -> np.ndarray:
    """A decoded mask as one 2-D (rows, cols) array of label values.

    Singleton axes are dropped (NIfTI ``X x Y x 1``); colour masks use their channel maximum (grey
    masks saved as RGB, or a coloured lesion on black); float masks with whole values become integers.
    NIfTI arrays are [x, y] (``fmt="nifti"``), so they are transposed to [row, col] as sonoseg.io does;
    a mask written the other way round (a numpy array saved as is) is detected against
    ``expect_shape`` and kept (a square one is taken in sonoseg's convention).
    """
    a = np.asarray(pixels)
    if a.ndim > 2:
        a = a.reshape([s for s in a.shape if s != 1])
    if a.ndim == 3 and a.shape[-1] in (3, 4) and fmt != "nifti":
        a = a[..., :3].max(axis=-1)
    if a.ndim != 2:
        raise InputError(path, f"mask must be a single 2-D image, got shape {tuple(np.asarray(pixels).shape)}")
    if fmt == "nifti":
        a = a.T
    if expect_shape is not None and a.shape != tuple(expect_shape) and a.shape[::-1] == tuple(expect_shape):
        a = a.T
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            return a  # left as float: validation reports the non-integer values
        a = a.astype(np.int64)
    if a.dtype == np.bool_:
        a = a.astype(np.uint8)
    if a.dtype.kind in "iu" and a.size and a.min() >= 0 and a.max() <= 255:
        a = a.astype(np.uint8, copy=False)
    return np.ascontiguousarray(a)


def load_mask(
    path: str | Path, expect_shape: Optional[tuple[int, int]] = None, classes: Optional[int] = None
) -> np.ndarray:
    """Read a mask file (PNG/TIFF/NIfTI/DICOM) with sonoseg.io and return its 2-D label map.

    ``classes=None``: the stored values; ``classes=1``: uint8 0/1 (any non-zero value is foreground,
    as in SegmentationDataset); ``classes=K>1``: int64 labels, InputError if any is outside 0..K-1."""
    from sonoseg.io import load_image

    loaded = load_image(path)
    mask = to_label_map(loaded.pixels, path, expect_shape, loaded.meta.format)
    return mask if classes is None else labels_for_classes(mask, classes, path)


def labels_for_classes(mask: np.ndarray, classes: int, path: str | Path) -> np.ndarray:
    """Training/evaluation labels: classes == 1 -> uint8 0/1 (any non-zero is foreground, so 0/255 and
    0/1 masks agree); classes K > 1 -> int64 0..K-1, InputError (naming ``path``) otherwise."""
    if mask.dtype.kind == "f":
        raise InputError(path, "mask has non-integer values (run sonoseg validate)")
    if classes == 1:
        return (mask > 0).astype(np.uint8)
    if mask.size and (mask.min() < 0 or mask.max() >= classes):
        bad = int(mask.max()) if mask.max() >= classes else int(mask.min())
        raise InputError(path, f"label {bad} outside 0..{classes - 1} (classes={classes})")
    return mask.astype(np.int64)
