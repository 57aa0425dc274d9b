"""Per-image segmentation metrics, with an explicit convention for empty masks.

Pixel counts TP/FP/FN/TN give Dice, IoU, precision, recall (= sensitivity), specificity and pixel
accuracy; HD95 and ASSD come from :mod:`sonoseg.metrics.surface` (mm when ``spacing`` = (row, col)
mm is given, else pixels).

Empty-mask convention (as MONAI ``ignore_empty=True`` / Metrics Reloaded), per image and class:

=====================  ===========================  ======================  ===================
case                   dice, iou, precision,        hd95, assd              specificity,
                       recall                                               accuracy
=====================  ===========================  ======================  ===================
GT empty, pred empty   NaN (not scored)             NaN                     computed (1.0)
GT empty, pred not     NaN (not scored)             NaN                     computed (< 1)
GT not, pred empty     0 (precision 0 as well)      image diagonal          computed
                       -> ``missed`` flag           (worst case, flagged)
both non-empty         usual formulas               usual                   computed
=====================  ===========================  ======================  ===================

Why: an empty-vs-empty image would otherwise score Dice 1 (or 0, depending on smoothing) and
silently move the mean. So overlap and distance means are taken over images with a non-empty
ground truth only, and every one of those images contributes to all six of dice, iou, precision,
recall, hd95 and assd (same ``n``). A missed lesion is a failure, so it scores precision 0 (not
NaN, which would drop it from the precision mean) and the largest possible distance (the
diagonal of the image extent) rather than NaN. Empty-GT images are reported separately by the
aggregate: how many there were, how many were correctly predicted empty, and how many got false
positives. Specificity is NaN only when the GT has no background pixel.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from sonoseg.metrics.surface import Backend, hd95_assd, image_diagonal

METRICS: tuple[str, ...] = ("dice", "iou", "precision", "recall", "specificity", "accuracy", "hd95", "assd")
OVERLAP = ("dice", "iou", "precision", "recall")
DISTANCE = ("hd95", "assd")

NAN = float("nan")


def _div(a: float, b: float) -> float:
    return float(a) / float(b) if b else NAN


def _as_binary(x: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype == bool:
        return a
    if np.issubdtype(a.dtype, np.floating) and not np.isin(a, (0.0, 1.0)).all():
        raise ValueError(f"{name} must be a binary mask (0/1 or bool), got float values outside {{0, 1}}")
    return a != 0


def binary_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    spacing: Optional[Sequence[float]] = None,
    backend: Backend = "monai",
    distances: bool = True,
) -> dict:
    """Metrics of one binary mask pair (bool arrays of equal shape). See the module docstring.

    ``distances=False`` skips HD95/ASSD (left NaN) where only overlap is needed (e.g. quick checks).
    """
    p = _as_binary(pred, "pred")
    g = _as_binary(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred shape {p.shape} != gt shape {g.shape}")
    tp = int(np.count_nonzero(p & g))
    fp = int(np.count_nonzero(p & ~g))
    fn = int(np.count_nonzero(~p & g))
    tn = int(p.size - tp - fp - fn)
    gt_empty, pred_empty = tp + fn == 0, tp + fp == 0
    out = {
        "dice": NAN, "iou": NAN, "precision": NAN, "recall": NAN,
        "specificity": _div(tn, tn + fp),
        "accuracy": _div(tp + tn, p.size),
        "hd95": NAN, "assd": NAN,
        "gt_empty": gt_empty, "pred_empty": pred_empty,
        "missed": (not gt_empty) and pred_empty,
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
    }  # fmt: skip
    if gt_empty:
        return out
    out["dice"] = 2 * tp / (2 * tp + fp + fn)
    out["iou"] = tp / (tp + fp + fn)
    out["recall"] = tp / (tp + fn)
    if pred_empty:
        out["precision"] = 0.0
        if distances:
            out["hd95"] = out["assd"] = image_diagonal(p.shape, spacing)
    else:
        out["precision"] = tp / (tp + fp)
        if distances:
            out["hd95"], out["assd"] = hd95_assd(p, g, spacing, backend=backend)
    return out


def segmentation_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    spacing: Optional[tuple[float, float]] = None,
    classes: int = 1,
    backend: Backend = "monai",
    distances: bool = True,
) -> dict:
    """Metrics of one image.

    ``classes == 1``: binary masks (non-zero = foreground); returns the :func:`binary_metrics` dict.
    ``classes == K > 1``: label maps with values 0..K-1 (0 = background); returns
    ``{1: {...}, ..., K-1: {...}, "macro": {...}}`` where "macro" holds the mean over classes of
    each metric, ignoring NaN classes (so a class absent from the GT does not count), except
    ``accuracy`` = overall multi-class pixel accuracy; its ``gt_empty``/``pred_empty`` are true when
    no foreground class is present, ``missed`` when any class present in GT is absent in pred.
    """
    if classes < 1:
        raise ValueError(f"classes must be >= 1, got {classes}")
    if np.shape(pred) != np.shape(gt):
        raise ValueError(f"pred shape {np.shape(pred)} != gt shape {np.shape(gt)}")
    if classes == 1:
        return binary_metrics(pred, gt, spacing, backend, distances)
    p, g = np.asarray(pred), np.asarray(gt)
    for name, a in (("pred", p), ("gt", g)):
        if a.size and (np.issubdtype(a.dtype, np.floating) and not np.all(a == np.round(a))):
            raise ValueError(f"{name} must be an integer label map for classes={classes}")
        if a.size and (a.min() < 0 or a.max() >= classes):
            raise ValueError(f"{name} labels must be in 0..{classes - 1}, got {a.min()}..{a.max()}")
    out: dict = {c: binary_metrics(p == c, g == c, spacing, backend, distances) for c in range(1, classes)}
    with np.errstate(all="ignore"):
        macro = {}
        for m in METRICS:
            vals = np.array([out[c][m] for c in range(1, classes)], dtype=float)
            macro[m] = float(np.nanmean(vals)) if np.isfinite(vals).any() else NAN
    macro["accuracy"] = float(np.mean(p == g)) if p.size else NAN
    macro["gt_empty"] = all(out[c]["gt_empty"] for c in range(1, classes))
    macro["pred_empty"] = all(out[c]["pred_empty"] for c in range(1, classes))
    macro["missed"] = any(out[c]["missed"] for c in range(1, classes))
    out["macro"] = macro
    return out
