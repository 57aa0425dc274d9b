#!/usr/bin/env python
"""Per-condition robustness of a model: the same split evaluated under scanner-like changes.

BUSI comes from one scanner family; an external set (other country, four other scanners) cost the
v2 model 8 Dice points. This script shows *which* image changes hurt: it writes a perturbed copy of
the split's images for each condition (gain, gamma curves, speckle, blur, JPEG re-compression) into
OUT/data-<condition>/ (masks and labels.csv linked, never copied into the repository), runs
``sonoseg evaluate`` (sonoseg.evaluate.run.evaluate_model) on each, and prints one table.

    python scripts/condition_eval.py ../shared/data/busi --model M.pt --split-file configs/busi_split.csv \
        --split test --out /tmp/conditions

Writes OUT/conditions.json and OUT/conditions.md. Conditions are fixed below, not tuned.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import cv2
import numpy as np

CONDITIONS = {
    "original": None,
    "gain x0.6": lambda x, r: x * 0.6,
    "gain x1.4": lambda x, r: x * 1.4,
    "gamma 0.6": lambda x, r: 255.0 * (x / 255.0) ** 0.6,
    "gamma 1.6": lambda x, r: 255.0 * (x / 255.0) ** 1.6,
    "speckle 0.25": lambda x, r: x * (1.0 + 0.25 * r.standard_normal(x.shape)),
    "blur sigma 1.5": lambda x, r: cv2.GaussianBlur(x, (0, 0), 1.5),
    "jpeg q25": "jpeg",
}


def _perturb(img: np.ndarray, cond, seed: int) -> np.ndarray:
    if cond == "jpeg":
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 25])
        return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    r = np.random.default_rng(seed)
    return np.clip(np.rint(cond(img.astype(np.float32), r)), 0, 255).astype(np.uint8)


def materialise(dataset: Path, stems: set[str], name: str, cond, out: Path) -> Path:
    d = out / f"data-{name.replace(' ', '_')}"
    (d / "images").mkdir(parents=True, exist_ok=True)
    if not (d / "masks").exists():
        os.symlink((dataset / "masks").resolve(), d / "masks")
    for extra in ("labels.csv",):
        if (dataset / extra).exists() and not (d / extra).exists():
            os.symlink((dataset / extra).resolve(), d / extra)
    for i, p in enumerate(sorted((dataset / "images").iterdir())):
        if p.stem not in stems or (d / "images" / p.name).exists():
            continue
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(d / "images" / p.name), img if cond is None else _perturb(img, cond, i))
    return d


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--model", type=Path, help="checkpoint (default: the shipped model)")
    ap.add_argument("--split-file", type=Path, required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    from sonoseg.data import read_split_csv
    from sonoseg.evaluate.options import EvaluateOptions
    from sonoseg.evaluate.run import evaluate_model

    stems = {stem for stem, part in read_split_csv(args.split_file).items() if part == args.split}
    rows = []
    for name, cond in CONDITIONS.items():
        data = materialise(args.dataset, stems, name, cond, args.out)
        ev = args.out / f"eval-{name.replace(' ', '_')}"
        evaluate_model(data, EvaluateOptions(split_file=args.split_file, split=args.split, model=args.model, out_dir=ev,
                                             threads=args.threads, n_boot=500), log=lambda m: None)
        m = json.loads((ev / "metrics.json").read_text())
        row = {"condition": name, "dice": m["dice"]["mean"], "dice_ci": m["dice"].get("ci95"),
               "precision": m["precision"]["mean"], "recall": m["recall"]["mean"]}
        cm_path = ev / "class_metrics.json"
        if cm_path.is_file():
            cm = json.loads(cm_path.read_text())
            row.update(bacc=cm["metrics"]["balanced_accuracy"]["value"],
                       auc_bm=cm["metrics"]["auc_benign_vs_malignant"]["value"],
                       normal_no_lesion=(cm.get("no_lesion_decision") or {}).get("no_lesion_by_decision_rule"))
        rows.append(row)
        print(json.dumps(row))
    (args.out / "conditions.json").write_text(json.dumps(rows, indent=2))
    head = "| condition | lesion Dice [95% CI] | precision | recall | balanced acc. | AUC benign vs malignant | normals called no lesion |"
    md = [head, "|---|---|--:|--:|--:|--:|--:|"]
    for r in rows:
        ci = r["dice_ci"] or [float("nan")] * 2
        fmt = lambda v, p="{:.3f}": "-" if v is None else p.format(v)  # noqa: E731
        md.append(f"| {r['condition']} | {r['dice']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] | {r['precision']:.3f} | "
                  f"{r['recall']:.3f} | {fmt(r.get('bacc'))} | {fmt(r.get('auc_bm'))} | "
                  f"{fmt(r.get('normal_no_lesion'), '{:.0%}')} |")
    (args.out / "conditions.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
