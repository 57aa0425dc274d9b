"""One table across sources: each dataset evaluated on its own, side by side.

A model trained on several hospitals is judged source by source (a pooled mean lets the largest
source hide a weak one). ``evaluate`` with several datasets writes each one's full evaluation into
``OUT/<source>/`` and this summary into ``OUT/per_source.json`` and ``OUT/per_source.md``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from sonoseg.evaluate.aggregate import jsonable

ROWS = (  # (key in the summary, label, format)
    ("n_images", "images", "{:d}"),
    ("dice", "lesion Dice [95% CI]", None),
    ("dice_found_lesions", "Dice on found lesions", "{:.3f}"),
    ("missed_by_mask", "lesions missed by the mask", "{:.1%}"),
    ("missed_by_decision", "lesions missed by the decision", "{:.1%}"),
    ("false_lesion", "normals with a lesion reported", "{:.1%}"),
    ("auc_benign_vs_malignant", "AUC benign vs malignant", "{:.3f}"),
    ("balanced_accuracy", "balanced accuracy", "{:.3f}"),
)


def source_summary(result) -> dict:
    """The headline numbers of one source's EvalResult."""
    return headline(len(result.per_image), result.aggregate, result.detection, result.class_metrics)


def headline(n_images: int, aggregate: dict, detection: dict | None, class_metrics: dict | None) -> dict:
    """The headline numbers from an evaluation's parts (aggregate, detection summary, class metrics);
    also used for pooled out-of-fold tables."""
    d = detection or {}
    agg = aggregate.get("dice", {})
    out = {"n_images": n_images, "dice": agg.get("mean"), "dice_ci95": agg.get("ci95"),
           "dice_found_lesions": d.get("dice_found_lesions"), "missed_by_mask": d.get("missed_by_mask"),
           "missed_by_decision": d.get("missed_by_decision"),
           "false_lesion": d.get("false_lesion_by_decision", d.get("false_lesion_by_mask"))}
    metrics = (class_metrics or {}).get("metrics", {})
    for key in ("auc_benign_vs_malignant", "balanced_accuracy"):
        out[key] = (metrics.get(key) or {}).get("value")
    return out


def _cell(key: str, fmt, row: dict) -> str:
    v = row.get(key)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if key == "dice":
        lo, hi = row.get("dice_ci95") or (None, None)
        return f"{v:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else "")
    return fmt.format(v)


def write_per_source(summaries: dict[str, dict], out_dir: str | Path, title: str) -> str:
    """Write per_source.json/.md; returns the Markdown table."""
    out = Path(out_dir)
    names = list(summaries)
    lines = [f"### {title}", "", "| | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    for key, label, fmt in ROWS:
        lines.append(f"| {label} | " + " | ".join(_cell(key, fmt, summaries[n]) for n in names) + " |")
    md = "\n".join(lines) + "\n"
    (out / "per_source.md").write_text(md)
    (out / "per_source.json").write_text(json.dumps(jsonable({"title": title, "sources": summaries}), indent=2) + "\n")
    return md
