"""Dataset validation: every problem that would silently corrupt training, listed per file.

Errors: missing/extra/ambiguous masks, unreadable images or masks, mask size != image size, mask values
that are not binary (0/255 or 0/1) when ``classes == 1`` or not labels 0..classes-1 otherwise.
Warnings: empty masks, files that are not images, labels.csv rows without image and vice versa.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal, Optional

import numpy as np

from sonoseg.data.layout import (
    MASK_DIR,
    image_shape,
    natural_sorted,
    scan_dataset,
    to_label_map,
)
from sonoseg.errors import ConfigError, SonosegError

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    severity: Severity
    kind: str  # missing_mask | extra_mask | duplicate_stem | unreadable_image | unreadable_mask |
    #            size_mismatch | non_binary_mask | label_out_of_range | empty_mask | ignored_file |
    #            no_mask_folder | labels_unknown_image | labels_missing_image | labels_duplicate_row
    path: str
    message: str
    stem: Optional[str] = None


@dataclass
class ValidationReport:
    root: Path
    classes: int
    n_images: int = 0
    n_masks: int = 0
    n_checked: int = 0  # image/mask pairs whose pixels were read
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def by_kind(self) -> Counter:
        return Counter(p.kind for p in self.problems)

    def stems_with(self, kind: str) -> list[str]:
        return [p.stem for p in self.problems if p.kind == kind and p.stem is not None]

    def summary(self) -> str:
        state = "OK" if self.ok else "INVALID"
        return (
            f"{state}: {self.n_images} images, {self.n_masks} masks, {self.n_checked} pairs checked; "
            f"{len(self.errors)} errors, {len(self.warnings)} warnings"
        )

    def lines(self) -> list[str]:
        return [f"{p.severity}: {p.kind}: {p.path}: {p.message}" for p in self.problems]

    def __str__(self) -> str:
        return "\n".join([self.summary(), *self.lines()])

    def to_dict(self) -> dict:
        return {
            "root": str(self.root),
            "classes": self.classes,
            "n_images": self.n_images,
            "n_masks": self.n_masks,
            "n_checked": self.n_checked,
            "ok": self.ok,
            "problems": [asdict(p) for p in self.problems],
        }


def _fmt_values(values: np.ndarray, limit: int = 6) -> str:
    vals = [f"{v:g}" if isinstance(v, float) else str(v) for v in values[:limit].tolist()]
    more = f", ... ({len(values)} distinct)" if len(values) > limit else ""
    return "{" + ", ".join(vals) + more + "}"


def check_mask_values(mask: np.ndarray, classes: int) -> Optional[tuple[str, str]]:
    """(kind, message) when the label values do not fit ``classes``; None when they do."""
    values = np.unique(mask)
    if mask.dtype.kind == "f":
        return "non_binary_mask", f"non-integer mask values {_fmt_values(values)}"
    if classes == 1:
        v = set(values.tolist())
        if v <= {0, 255} or v <= {0, 1}:
            return None
        return "non_binary_mask", f"mask values {_fmt_values(values)}, expected binary 0/255 (or 0/1)"
    bad = values[(values < 0) | (values >= classes)]
    if bad.size:
        return "label_out_of_range", f"labels {_fmt_values(bad)} outside 0..{classes - 1} (classes={classes})"
    return None


def _load(path: Path):
    from sonoseg.io import load_image

    return load_image(path)


def problem_reason(exc: BaseException) -> str:
    """A report row's reason for a failed read: an input error's own reason (the row names the file already),
    else the exception's first line."""
    if isinstance(exc, SonosegError) and hasattr(exc, "reason"):
        return exc.reason
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text


def validate_dataset(
    root: str | Path,
    classes: int = 1,
    check_pixels: bool = True,
    on_progress: Optional[Callable[[int, int], None]] = None,
) -> ValidationReport:
    """Check a dataset folder; never raises for problems inside it (only when ``images/`` is absent).

    ``classes`` follows the model config: 1 = binary masks, K > 1 = label maps with values 0..K-1.
    ``check_pixels=False`` only checks names (fast)."""
    if classes < 1:
        raise ConfigError(f"classes must be >= 1, got {classes}")
    scan = scan_dataset(root)
    rep = ValidationReport(Path(root), classes, len(scan.images), len(scan.masks))
    add = rep.problems.append

    if not scan.has_mask_dir:
        add(Problem("error", "no_mask_folder", str(Path(root) / MASK_DIR), f"no '{MASK_DIR}/' folder"))
    for kind_dir, dups in (("image", scan.duplicate_images), ("mask", scan.duplicate_masks)):
        for stem, paths in dups.items():
            names = ", ".join(p.name for p in paths)
            add(Problem("error", "duplicate_stem", str(paths[0].parent), f"{kind_dir}s {names} share the stem {stem!r}", stem))
    if scan.has_mask_dir:
        for stem in natural_sorted(set(scan.images) - set(scan.masks)):
            add(Problem("error", "missing_mask", str(scan.images[stem]), f"no mask named {stem}.* in {MASK_DIR}/", stem))
    for stem in natural_sorted(set(scan.masks) - set(scan.images)):
        add(Problem("error", "extra_mask", str(scan.masks[stem]), "mask without an image of the same stem", stem))
    for p in scan.ignored:
        add(Problem("warning", "ignored_file", str(p), "not an image (unknown extension/content), ignored"))
    if scan.labels is not None:
        lt = scan.labels
        for stem in natural_sorted(set(lt.rows) - set(scan.images)):
            add(Problem("warning", "labels_unknown_image", str(lt.path), f"row for {stem!r}, which is not in images/", stem))
        for stem in natural_sorted(set(scan.images) - set(lt.rows)):
            add(Problem("warning", "labels_missing_image", str(lt.path), f"no row for image {stem!r}", stem))
        for stem in sorted(set(lt.duplicate_stems)):
            add(Problem("warning", "labels_duplicate_row", str(lt.path), f"{stem!r} has more than one row (last wins)", stem))

    if check_pixels:
        stems = natural_sorted(scan.images)
        for k, stem in enumerate(stems):
            _check_pair(stem, scan.images[stem], scan.masks.get(stem), classes, rep)
            if on_progress:
                on_progress(k + 1, len(stems))
    return rep


def _check_pair(stem: str, image_path: Path, mask_path: Optional[Path], classes: int, rep: ValidationReport) -> None:
    add = rep.problems.append
    shape = None
    try:
        img = _load(image_path)
        shape = image_shape(img.pixels, img.meta)
    except Exception as exc:  # any decoder failure is a finding, not a crash
        add(Problem("error", "unreadable_image", str(image_path), problem_reason(exc), stem))
    if mask_path is None:
        return
    try:
        loaded = _load(mask_path)
        mask = to_label_map(loaded.pixels, mask_path, shape, loaded.meta.format)
    except Exception as exc:
        add(Problem("error", "unreadable_mask", str(mask_path), problem_reason(exc), stem))
        return
    if shape is None:
        return
    rep.n_checked += 1
    if mask.shape != shape:
        add(Problem("error", "size_mismatch", str(mask_path), f"mask is {mask.shape[0]}x{mask.shape[1]} (rows x cols), image is {shape[0]}x{shape[1]}", stem))
    bad = check_mask_values(mask, classes)
    if bad:
        add(Problem("error", bad[0], str(mask_path), bad[1], stem))
    elif not np.any(mask):
        add(Problem("warning", "empty_mask", str(mask_path), "mask has no foreground pixels", stem))
