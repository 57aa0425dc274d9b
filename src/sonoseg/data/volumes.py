"""Volume datasets (3D): ``images/<case>.nii.gz`` or ``images/<case>/`` (a DICOM series folder),
``masks/<case>.nii.gz`` (label maps 0..K in the image's grid) and ``labels.json`` ({"1": "spleen", ...})
or ``labels.csv`` (id,name) naming the label ids. Cases pair by stem as in 2D datasets.

:func:`validate_volumes` opens every pair and checks that the mask lies on the image's grid (shape,
spacing, affine): a mask resampled or flipped on export would otherwise train on shifted organs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from sonoseg.data.layout import IMAGE_DIR, MASK_DIR, Sample, scan_dir, natural_sorted, read_csv_records
from sonoseg.data.validate import Problem, ValidationReport
from sonoseg.errors import InputError

CLASS_FILES = ("labels.json", "labels.csv")
AFFINE_TOL_MM = 1e-3  # geometry agreement between image and mask (header round-off)


def _series_dirs(d: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(d.iterdir()) if p.is_dir() and not p.name.startswith(".")}


def is_volume_dataset(root: str | Path) -> bool:
    """True when the dataset holds volumes: a DICOM series folder in images/, a labels.json, or a
    first NIfTI image with more than one slice (header only)."""
    root = Path(root)
    img = root / IMAGE_DIR
    if not img.is_dir():
        return False
    if (root / "labels.json").is_file() or _series_dirs(img):
        return True
    for p in sorted(img.iterdir()):
        if p.name.lower().endswith((".nii", ".nii.gz")):
            import nibabel as nib

            try:
                shape = nib.load(str(p)).shape
            except Exception:  # noqa: BLE001 - unreadable: let validate say so
                return False
            return len(shape) >= 3 and shape[2] > 1
    return False


def read_class_names(root: str | Path) -> dict[int, str]:
    """label id -> name from labels.json or labels.csv (id/label/value + name/organ/class columns)."""
    root = Path(root)
    js, cs = root / CLASS_FILES[0], root / CLASS_FILES[1]
    if js.is_file():
        try:
            raw = json.loads(js.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(js, f"not readable JSON ({exc})") from None
        raw = raw.get("labels", raw) if isinstance(raw, dict) else raw
        try:
            return {int(k): str(v) for k, v in raw.items() if int(k) != 0}
        except (AttributeError, TypeError, ValueError):
            raise InputError(js, 'expected {"<id>": "<name>", ...}') from None
    if cs.is_file():
        header, rows = read_csv_records(cs, "labels file")
        low = {h.strip().lower(): h for h in header}
        idc = next((low[c] for c in ("id", "label", "value", "label_id") if c in low), None)
        nc = next((low[c] for c in ("name", "organ", "class", "structure") if c in low), None)
        if idc is None or nc is None:
            raise InputError(cs, f"expected columns id,name (found {', '.join(header) or 'none'})")
        out = {}
        for r in rows:
            try:
                k = int(str(r[idc]).strip())
            except ValueError:
                raise InputError(cs, f"label id {r[idc]!r} is not an integer") from None
            if k != 0 and (r.get(nc) or "").strip():
                out[k] = r[nc].strip()
        return out
    return {}


def discover_volumes(root: str | Path, require_masks: bool = False) -> list[Sample]:
    """Cases in natural stem order: NIfTI files and DICOM series folders of images/."""
    root = Path(root)
    img_dir, mask_dir = root / IMAGE_DIR, root / MASK_DIR
    if not img_dir.is_dir():
        raise InputError(root, f"no '{IMAGE_DIR}/' folder (expected {IMAGE_DIR}/ and {MASK_DIR}/)")
    images, dups, _ = scan_dir(img_dir)
    if dups:
        stem, paths = next(iter(dups.items()))
        raise InputError(paths[1], f"two images share the stem {stem!r}")
    for name, p in _series_dirs(img_dir).items():
        if name in images:
            raise InputError(p, f"both a file and a series folder are named {name!r}")
        images[name] = p
    masks = scan_dir(mask_dir)[0] if mask_dir.is_dir() else {}
    if not images:
        raise InputError(img_dir, "no volumes (NIfTI files or DICOM series folders)")
    out = []
    for stem in natural_sorted(images):
        if stem not in masks and require_masks:
            raise InputError(images[stem], f"no mask with stem {stem!r} in {MASK_DIR}/")
        out.append(Sample(stem, images[stem], masks.get(stem)))
    return out


def reoriented_like(image, mask) -> Optional[np.ndarray]:
    """``mask.array`` in ``image``'s [z, y, x] voxel order when both describe the same grid with the
    axes stored in another order or direction (a DICOM series read bottom-up vs a NIfTI written
    top-down); None when the grids differ."""
    import nibabel.orientations as ornt

    ai, am = np.asarray(image.affine, float), np.asarray(mask.affine, float)
    try:
        t = ornt.ornt_transform(ornt.io_orientation(am), ornt.io_orientation(ai))
    except ValueError:
        return None
    data = np.asarray(mask.array).T  # [x, y, z]
    moved = ornt.apply_orientation(data, t)
    new_aff = am @ ornt.inv_ornt_aff(t, data.shape)
    if moved.shape != image.array.T.shape or np.abs(new_aff - ai).max() > AFFINE_TOL_MM:
        return None
    return np.ascontiguousarray(moved.T)


def grid_problems(image, mask) -> list[str]:
    """Differences between two Volumes' grids, in words ([] when they match, also when the mask stores
    the same grid in another axis order: see :func:`reoriented_like`)."""
    out = []
    same = image.array.shape == mask.array.shape and np.abs(np.asarray(image.affine) - np.asarray(mask.affine)).max() <= AFFINE_TOL_MM
    if not same and reoriented_like(image, mask) is not None:
        return out
    if image.array.shape != mask.array.shape:
        zi, yi, xi = image.array.shape
        zm, ym, xm = mask.array.shape
        out.append(f"shape {xm}x{ym}x{zm} (x*y*z), image is {xi}x{yi}x{zi}")
    si, sm = np.asarray(image.spacing), np.asarray(mask.spacing)
    if not np.allclose(si, sm, atol=AFFINE_TOL_MM):
        out.append("spacing {} mm, image is {} mm".format(
            "x".join(f"{v:g}" for v in sm[::-1]), "x".join(f"{v:g}" for v in si[::-1])))
    d = np.abs(np.asarray(image.affine) - np.asarray(mask.affine)).max()
    if d > AFFINE_TOL_MM and not out:
        out.append(f"affine differs from the image's by up to {d:.3g} mm (origin or axis directions)")
    return out


def validate_volumes(root: str | Path, on_progress: Optional[Callable[[int, int], None]] = None) -> ValidationReport:
    """Every pair read and compared: missing/extra masks, unreadable files, grid mismatches (shape,
    spacing, affine), non-integer or negative labels (errors); label ids without a name and empty
    masks (warnings)."""
    root = Path(root)
    samples = discover_volumes(root)
    names = read_class_names(root)
    mask_dir = root / MASK_DIR
    masks = scan_dir(mask_dir)[0] if mask_dir.is_dir() else {}
    rep = ValidationReport(root, max(names or [0]) + 1, len(samples), len(masks))
    add = rep.problems.append
    if not mask_dir.is_dir():
        add(Problem("error", "no_mask_folder", str(mask_dir), f"no '{MASK_DIR}/' folder"))
    if not names:
        add(Problem("warning", "no_class_names", str(root), "no labels.json / labels.csv naming the label ids"))
    stems = {s.stem for s in samples}
    for stem in natural_sorted(set(masks) - stems):
        add(Problem("error", "extra_mask", str(masks[stem]), "mask without an image of the same stem", stem))
    for k, s in enumerate(samples):
        _check_case(s, names, rep)
        if on_progress:
            on_progress(k + 1, len(samples))
    return rep


def _check_case(s: Sample, names: dict[int, str], rep: ValidationReport) -> None:
    from sonoseg.data.validate import problem_reason
    from sonoseg.io import read_nifti
    from sonoseg.preprocess.volume import read_volume

    add = rep.problems.append
    if s.mask_path is None:
        add(Problem("error", "missing_mask", str(s.image_path), f"no mask named {s.stem}.nii.gz in {MASK_DIR}/", s.stem))
    try:
        image = read_volume(s.image_path)
    except Exception as exc:  # any reader failure is a finding
        add(Problem("error", "unreadable_image", str(s.image_path), problem_reason(exc), s.stem))
        return
    if s.mask_path is None:
        return
    try:
        mask = read_nifti(s.mask_path) if s.mask_path.name.lower().endswith((".nii", ".nii.gz")) else read_volume(s.mask_path)
    except Exception as exc:
        add(Problem("error", "unreadable_mask", str(s.mask_path), problem_reason(exc), s.stem))
        return
    rep.n_checked += 1
    for msg in grid_problems(image, mask):
        add(Problem("error", "grid_mismatch", str(s.mask_path), f"mask {msg}", s.stem))
    m = mask.array
    if m.dtype.kind == "f" and not np.all(m == np.round(m)):
        add(Problem("error", "non_integer_labels", str(s.mask_path), "label map has non-integer values", s.stem))
        return
    values = [int(v) for v in np.unique(m)]
    if values and values[0] < 0:
        add(Problem("error", "label_out_of_range", str(s.mask_path), f"negative label {values[0]}", s.stem))
    unnamed = [v for v in values if v > 0 and names and v not in names]
    if unnamed:
        add(Problem("warning", "unnamed_labels", str(s.mask_path),
                    f"label ids {unnamed[:8]}{' ...' if len(unnamed) > 8 else ''} have no name (trained as background)", s.stem))
    if values == [0]:
        add(Problem("warning", "empty_mask", str(s.mask_path), "mask has no labelled voxel", s.stem))


def mask_on_image_grid(image, mask, path: str | Path) -> np.ndarray:
    """``mask``'s labels in ``image``'s [z, y, x] order; InputError naming ``path`` if the grids differ."""
    problems = grid_problems(image, mask)
    if problems:
        raise InputError(path, f"mask is not on the image's grid: {problems[0]}")
    if image.array.shape == mask.array.shape and np.abs(np.asarray(image.affine) - np.asarray(mask.affine)).max() <= AFFINE_TOL_MM:
        return np.asarray(mask.array)
    return reoriented_like(image, mask)


def load_case(sample: Sample, vcfg=None):
    """(image Volume, mask as model classes 0..K on the image grid, or None without a mask)."""
    from sonoseg.preprocess.volume import read_volume, to_classes

    image = read_volume(sample.image_path)
    if sample.mask_path is None:
        return image, None
    mask = mask_on_image_grid(image, read_volume(sample.mask_path), sample.mask_path)
    return image, (to_classes(mask, vcfg, sample.mask_path) if vcfg is not None else mask)
