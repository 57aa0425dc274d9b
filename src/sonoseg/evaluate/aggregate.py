"""Dataset-level summaries: mean / std / median / bootstrap 95% CI per metric, empty-case counts,
and the ``metrics.json`` + ``per_image.csv`` files of an evaluation run.

NaN values (images where a metric is undefined, see :mod:`sonoseg.metrics.segmentation`) are left
out of every statistic; ``n`` counts only finite values and ``counts["excluded"]`` says, per
metric, how many images were left out and why.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Optional, Sequence

import numpy as np
import pandas as pd

from sonoseg.errors import InputError
from sonoseg.metrics.segmentation import METRICS, segmentation_metrics
from sonoseg.metrics.surface import Backend

CONVENTIONS = (
    "Overlap (dice, iou, precision, recall) and distance (hd95, assd) metrics are averaged over images "
    "whose ground truth is non-empty; empty-GT images are counted separately (n_empty_gt, "
    "n_empty_gt_correct, n_empty_gt_false_positive). A non-empty GT with an empty prediction (missed) "
    "scores dice=iou=precision=recall=0 and hd95=assd=image diagonal. Specificity and accuracy use all "
    "images. std uses ddof=1; ci95 is a percentile bootstrap CI of the mean."
)


def bootstrap_ci(
    x: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95, max_elems: int = 4_000_000
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of finite values ``x`` (resampling done in numpy blocks)."""
    x = np.asarray(x, dtype=float)
    if x.size == 0 or n_boot <= 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    block = max(1, max_elems // x.size)
    for start in range(0, n_boot, block):
        k = min(block, n_boot - start)
        means[start : start + k] = x[rng.integers(0, x.size, size=(k, x.size))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return (float(lo), float(hi))


def summarize(values: Iterable[float], n_boot: int = 1000, seed: int = 0) -> dict:
    """{"mean","std","ci95":[lo,hi],"n","median"} of the finite values."""
    x = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").to_numpy(dtype=float)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return {"mean": math.nan, "std": math.nan, "ci95": [math.nan, math.nan], "n": 0, "median": math.nan}
    return {
        "mean": float(x.mean()),
        "std": float(x.std(ddof=1)) if n > 1 else 0.0,
        "ci95": list(bootstrap_ci(x, n_boot=n_boot, seed=seed)),
        "n": n,
        "median": float(np.median(x)),
    }


def aggregate(
    per_image: list[dict] | pd.DataFrame,
    keys: Sequence[str] = METRICS,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, dict]:
    """Summary per key over images; a key missing from the table gets n=0. Same seed -> same CI."""
    df = per_image if isinstance(per_image, pd.DataFrame) else pd.DataFrame(list(per_image))
    return {k: summarize(df[k] if k in df else [], n_boot=n_boot, seed=seed) for k in keys}


def count_cases(df: pd.DataFrame, suffix: str = "") -> dict[str, Any]:
    """Empty-mask bookkeeping for one (class) column set: how many images were excluded and why."""
    n = len(df)
    gt_empty = df[f"gt_empty{suffix}"].astype(bool) if n else pd.Series([], dtype=bool)
    pred_empty = df[f"pred_empty{suffix}"].astype(bool) if n else pd.Series([], dtype=bool)
    missed = df[f"missed{suffix}"].astype(bool) if n else pd.Series([], dtype=bool)
    n_empty_gt = int(gt_empty.sum())
    n_correct = int((gt_empty & pred_empty).sum())
    excluded = {}
    for m in METRICS:
        col = f"{m}{suffix}"
        vals = pd.to_numeric(df[col], errors="coerce") if col in df else pd.Series([np.nan] * n)
        bad = ~np.isfinite(vals.to_numpy(dtype=float))
        reasons = {}
        if bad.any():
            ge = gt_empty.to_numpy()
            if (bad & ge).any():
                reasons["empty_gt"] = int((bad & ge).sum())
            other = bad & ~ge
            if other.any():
                reasons["gt_all_foreground" if m == "specificity" else "undefined"] = int(other.sum())
        excluded[m] = {"n": int(bad.sum()), "reasons": reasons}
    return {
        "n_images": n,
        "n_gt_nonempty": n - n_empty_gt,
        "n_empty_gt": n_empty_gt,
        "n_empty_gt_correct": n_correct,
        "n_empty_gt_false_positive": n_empty_gt - n_correct,
        "empty_gt_correct_rate": (n_correct / n_empty_gt) if n_empty_gt else math.nan,
        "n_missed": int(missed.sum()),
        "excluded": excluded,
    }


@dataclass
class EvalResult:
    """Everything an evaluation produced: one row per image, summaries, and empty-case counts.

    For multi-class runs the plain metric columns/keys hold the per-image macro mean over classes,
    and ``per_class[c]`` / ``counts_per_class[c]`` hold class ``c`` (columns ``<metric>_c<c>``).
    """

    per_image: pd.DataFrame
    aggregate: dict[str, dict]
    counts: dict[str, Any]
    units: str  # "mm" | "px": unit of hd95 / assd
    classes: int = 1
    per_class: dict[int, dict[str, dict]] = field(default_factory=dict)
    measurement_agreement: dict[str, dict] = field(default_factory=dict)  # evaluate --measurements
    counts_per_class: dict[int, dict[str, Any]] = field(default_factory=dict)
    n_boot: int = 1000
    seed: int = 0
    notes: list[str] = field(default_factory=list)
    class_metrics: Optional[dict] = None  # class_metrics.json content when the model has a class head
    detection: dict = field(default_factory=dict)  # miss / false-lesion rates (sonoseg.evaluate.detection)


def _row(stem: str, metrics: dict, classes: int, spacing) -> dict:
    row: dict[str, Any] = {"stem": stem}
    if classes == 1:
        row.update(metrics)
    else:
        row.update(metrics["macro"])
        for c in range(1, classes):
            row.update({f"{k}_c{c}": v for k, v in metrics[c].items()})
    row["spacing_row"] = float(spacing[0]) if spacing is not None else math.nan
    row["spacing_col"] = float(spacing[1]) if spacing is not None else math.nan
    return row


def evaluate_pairs(
    items: Iterable[tuple[str, np.ndarray, np.ndarray, Optional[tuple[float, float]]]],
    classes: int = 1,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    distance_units: Literal["auto", "mm", "px"] = "auto",
    backend: Backend = "monai",
    on_item: Optional[Callable[[str], None]] = None,
) -> EvalResult:
    """Score (stem, pred, gt, spacing) tuples (consumed lazily) and summarize them.

    ``distance_units``: "px" ignores spacing; "mm" requires it for every image; "auto" uses mm when
    every image has a spacing and px when none has; a mix raises (averaging mm with px is meaningless).
    """
    if distance_units not in ("auto", "mm", "px"):
        raise ValueError(f"distance_units must be auto | mm | px, got {distance_units!r}")
    rows, seen_units = [], None
    for stem, pred, gt, spacing in items:
        stem = str(stem)
        if distance_units == "px":
            spacing = None
        unit = "mm" if spacing is not None else "px"
        if distance_units == "mm" and spacing is None:
            raise InputError(stem, "no pixel spacing known (distance_units='mm')")
        if seen_units is not None and unit != seen_units:
            raise InputError(stem, f"distances would be in {unit} but earlier images are in {seen_units}; "
                             "use distance_units='px' or give every image a spacing")  # fmt: skip
        seen_units = unit
        if np.shape(pred) != np.shape(gt):
            raise InputError(stem, f"prediction shape {np.shape(pred)} != ground truth shape {np.shape(gt)}")
        try:
            m = segmentation_metrics(pred, gt, spacing=spacing, classes=classes, backend=backend)
        except ValueError as exc:
            raise InputError(stem, str(exc)) from exc
        rows.append(_row(stem, m, classes, spacing))
        if on_item is not None:
            on_item(stem)
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=["stem", *METRICS, "gt_empty", "pred_empty", "missed"])
    units = seen_units or ("px" if distance_units != "mm" else "mm")
    per_class, counts_per_class = {}, {}
    if classes > 1:
        for c in range(1, classes):
            cols = {f"{m}_c{c}": m for m in METRICS if f"{m}_c{c}" in df}
            per_class[c] = aggregate(df[list(cols)].rename(columns=cols), METRICS, n_boot=n_boot, seed=seed)
            counts_per_class[c] = count_cases(df, suffix=f"_c{c}")
    return EvalResult(
        per_image=df,
        aggregate=aggregate(df, METRICS, n_boot=n_boot, seed=seed),
        counts=count_cases(df),
        units=units,
        classes=classes,
        per_class=per_class,
        counts_per_class=counts_per_class,
        n_boot=n_boot,
        seed=seed,
    )


def jsonable(x: Any) -> Any:
    """NaN/inf -> null (strict JSON), numpy scalars -> Python, int dict keys -> str."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer, int)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None
    return x


def metrics_dict(result: EvalResult) -> dict:
    """The content of metrics.json (before NaN -> null)."""
    out: dict[str, Any] = {m: result.aggregate[m] for m in METRICS}
    out["units"] = result.units  # of hd95 / assd; the other metrics are unitless
    out["classes"] = result.classes
    out["averaging"] = "binary" if result.classes == 1 else "macro over classes 1..K-1"
    out["counts"] = result.counts
    if result.classes > 1:
        out["per_class"] = {
            c: {**result.per_class[c], "counts": result.counts_per_class[c]} for c in result.per_class
        }
    out["bootstrap"] = {"n_boot": result.n_boot, "seed": result.seed, "method": "percentile, mean"}
    out["conventions"] = CONVENTIONS
    if result.notes:
        out["notes"] = list(result.notes)
    return out


def write_metrics(result: EvalResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``metrics.json`` (strict JSON, NaN as null) and ``per_image.csv`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mpath, cpath = out / "metrics.json", out / "per_image.csv"
    mpath.write_text(json.dumps(jsonable(metrics_dict(result)), indent=2, allow_nan=False) + "\n")
    result.per_image.to_csv(cpath, index=False)
    return {"metrics": mpath, "per_image": cpath}


CHECKPOINT_TEST_KEYS = ("dice", "iou", "precision", "recall", "hd95", "assd")  # what a shipped checkpoint's "test" keeps


def read_checkpoint_metrics(eval_dir: str | Path) -> dict:
    """What a shipped checkpoint carries of one evaluation folder (``sonoseg models`` lists it): ``test``,
    the segmentation summaries of its metrics.json, and ``test_class``, class_metrics.json's metrics when
    the model has a class head. ``eval_dir`` may name the metrics.json itself."""
    folder = Path(eval_dir)
    folder = folder.parent if folder.is_file() else folder
    path = folder / "metrics.json"
    if not path.is_file():
        raise InputError(folder, "no metrics.json: not a `sonoseg evaluate` output folder")
    m = json.loads(path.read_text())
    out = {"test": {k: m[k] for k in CHECKPOINT_TEST_KEYS if k in m}}
    cm = folder / "class_metrics.json"
    if cm.is_file():
        out["test_class"] = dict(json.loads(cm.read_text())["metrics"])
    return out
