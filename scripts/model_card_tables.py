"""Print the model card's result tables (markdown) from one `sonoseg evaluate` output folder.

Usage: python scripts/model_card_tables.py EVAL_DIR [LABELS_CSV COLUMN...]
Reads EVAL_DIR/metrics.json and, for a model with a class head, EVAL_DIR/class_metrics.json. With a
labels.csv and column names (e.g. BUSI's ``stored_mode``: L = plain grey, RGB = coloured on-screen
marks), also prints lesion Dice per value of each column (per-condition results).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _ci(v: dict, digits: int = 3) -> str:
    lo, hi = v.get("ci95") or [None, None]
    val = v.get("mean", v.get("value"))
    if val is None:
        return "n/a"
    ci = f" [{lo:.{digits}f}, {hi:.{digits}f}]" if lo is not None and hi is not None else ""
    return f"{val:.{digits}f}{ci}"


def per_condition(eval_dir: Path, labels_csv: str, columns: list[str]) -> None:
    import pandas as pd

    per = pd.read_csv(eval_dir / "per_image.csv")
    lab = pd.read_csv(labels_csv)
    key = next(c for c in lab.columns if c.lower() in ("image", "case", "stem", "name"))
    df = per.merge(lab.rename(columns={key: "stem"}), on="stem", how="left")
    for col in columns:
        print(f"\n| {col} | n lesion images | Dice mean | precision | recall |\n| --- | --- | --- | --- | --- |")
        for val, g in df[df["dice"].notna()].groupby(col):
            print(f"| {val} | {len(g)} | {g['dice'].mean():.3f} | {g['precision'].mean():.3f} | {g['recall'].mean():.3f} |")


def main(eval_dir: str, labels_csv: str | None = None, *columns: str) -> None:
    d = Path(eval_dir)
    if labels_csv:
        per_condition(d, labels_csv, list(columns))
    m = json.loads((d / "metrics.json").read_text())
    print("| metric (lesion images) | mean [95% CI] | n |\n| --- | --- | --- |")
    for k in ("dice", "iou", "precision", "recall", "hd95", "assd"):
        if m.get(k):
            print(f"| {k} | {_ci(m[k])} | {m[k]['n']} |")
    cm_path = d / "class_metrics.json"
    if not cm_path.is_file():
        return
    cm = json.loads(cm_path.read_text())
    print(f"\n| class metric ({cm['n']} images) | value [95% CI] |\n| --- | --- |")
    for k, v in cm["metrics"].items():
        print(f"| {k} | {_ci(v)} |")
    names = cm["names"]
    print("\n| true \\ predicted | " + " | ".join(names) + " |\n| --- |" + " --- |" * len(names))
    for n, row in zip(names, cm["confusion_matrix"]):
        print(f"| {n} | " + " | ".join(map(str, row)) + " |")
    print("\n| true class | n | Dice | precision | recall |\n| --- | --- | --- | --- | --- |")
    for cls, s in cm["segmentation_per_class"].items():
        print(f"| {cls} | {s['n_images']} | {_ci(s['dice'])} | {_ci(s['precision'])} | {_ci(s['recall'])} |")
    nl = cm.get("no_lesion_decision") or {}
    if nl:
        print(f"\nno-lesion images ({nl['n_no_lesion_images']}): called 'no lesion' by the class head "
              f"{nl['no_lesion_by_class_head']:.1%}, by an empty mask {nl['no_lesion_by_empty_mask']:.1%}, by the "
              f"decision rule {nl['no_lesion_by_decision_rule']:.1%}; lesion images ({nl['n_lesion_images']}): "
              f"'lesion found' {nl['lesion_found_by_decision_rule']:.1%}, mask non-empty {nl['lesion_mask_nonempty']:.1%}")


if __name__ == "__main__":
    main(*sys.argv[1:])
