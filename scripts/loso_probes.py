#!/usr/bin/env python
"""Leave-one-source-out probes (issue 22, item 2): which augmentations carry a model to a scanner it
never saw? Each candidate recipe is trained on one source's train split and scored on the *other*
source's val split (and its own), for both directions. Rule and outcome: docs/breast_v4/loso_rule.md.

    .venv/bin/python scripts/loso_probes.py --out /tmp/loso --epochs 10

- Training is the real ``sonoseg train`` (one process of 2 threads, the recipe's batch of 8; ``--procs
  N``: ``torchrun`` with N processes of 1 thread, the batch split between them); the probe's checkpoint
  is ``last.pt`` (fixed epochs: nothing is chosen on the held-out source).
- Scoring is the real ``sonoseg evaluate --split val`` over both sources' val splits, fp32 torch, in
  original pixels; a probe's score = mean(lesion Dice, balanced accuracy) on the held-out source.
- Resumable: a finished step (``summary.json`` / ``per_source.json``) is skipped, a cut-off training
  is resumed from its ``last.pt``. Prints a table; writes ``loso.json`` and ``loso.md`` to ``--out``.
Test splits are never touched.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SOURCES = {"busi": (DATA / "busi", REPO / "configs" / "busi_split.csv"),
           "bus_uclm": (DATA / "bus_uclm", REPO / "configs" / "bus_uclm_split.csv")}
NO_INTENSITY = ["augment.brightness_contrast_p=0", "augment.gamma_p=0", "augment.speckle_p=0", "augment.blur_p=0"]
STRONG = ["augment.brightness_contrast=0.4", "augment.brightness_contrast_p=0.8", "augment.gamma_range=[0.4,2.2]",
          "augment.gamma_p=0.6", "augment.speckle_sigma=[0.0,0.35]", "augment.speckle_p=0.5",
          "augment.blur_sigma=[0.3,2.5]", "augment.blur_p=0.4", "augment.gauss_noise_std=[0.0,0.06]",
          "augment.gauss_noise_p=0.3"]
CANDIDATES = {"geometric": NO_INTENSITY, "v3": [], "strong": STRONG}  # v3 = configs/busi_v3.yaml as it is


def sh(cmd: list[str], log: Path, env: dict | None = None) -> None:
    print("+", " ".join(map(str, cmd)), flush=True)
    with log.open("a") as fh:
        subprocess.run(list(map(str, cmd)), check=True, stdout=fh, stderr=subprocess.STDOUT, env=env)


def train(args, overrides: list[str], src: str, run: Path) -> None:
    if (run / "summary.json").is_file():
        return
    data, split = SOURCES[src]
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.procs}",
              "-m", "sonoseg"] if args.procs > 1 else [sys.executable, "-m", "sonoseg"]
    per_proc = ["--threads", "1", "--batch-size", str(8 // args.procs)] if args.procs > 1 else ["--threads", "2"]
    where = ["--resume", run] if (run / "last.pt").is_file() else ["--out", run.parent, "--name", run.name]
    cmd = [*launch, "train", data, "--split-file", split, "-c", REPO / "configs" / "busi_v3.yaml", "--epochs",
           str(args.epochs), *per_proc, "--no-progress", *where, "--set", f"data.cache_dir={args.out / 'cache'}"]
    for o in overrides:
        cmd += ["--set", o]
    sh(cmd, run.parent / f"{run.name}.log", env=dict(os.environ, OMP_NUM_THREADS="1" if args.procs > 1 else "2"))


def evaluate(args, run: Path) -> dict:
    out = run / "eval_val"
    if not (out / "per_source.json").is_file():
        (d1, s1), (d2, s2) = SOURCES["busi"], SOURCES["bus_uclm"]
        sh([sys.executable, "-m", "sonoseg", "evaluate", d1, d2, "--split-file", s1, "--split-file", s2,
            "--split", "val", "--model", run / "last.pt", "--backend", "torch", "--threads", "2",
            "--no-progress", "--out", out], run.parent / f"{run.name}.eval.log")
    return json.loads((out / "per_source.json").read_text())["sources"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--procs", type=int, default=1, help="1: one process of 2 threads; N: N DDP processes of 1 thread")
    ap.add_argument("--only", nargs="*", default=None, help="candidate names to run (default: all)")
    args = ap.parse_args()
    for d, s in SOURCES.values():
        if not d.is_dir():
            sys.exit(f"{d}: dataset folder not found")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, overrides in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        row = {"candidate": name, "overrides": overrides}
        for src in SOURCES:
            held = next(s for s in SOURCES if s != src)
            run = args.out / f"{name}-from-{src}"
            train(args, overrides, src, run)
            per = evaluate(args, run)
            row[f"{src}->{held}"] = {"held_out": per[held], "in_domain": per[src],
                                     "score": (per[held]["dice"] + per[held]["balanced_accuracy"]) / 2}
        row["score"] = sum(v["score"] for k, v in row.items() if "->" in k) / 2
        rows.append(row)
    md = ["| candidate | direction | held-out Dice | missed (mask / decision) | normals flagged | AUC | bacc | "
          "held-out score | in-domain Dice / bacc |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        for k, v in r.items():
            if "->" not in k:
                continue
            h, i = v["held_out"], v["in_domain"]
            md.append(f"| {r['candidate']} | {k} | {h['dice']:.3f} [{h['dice_ci95'][0]:.3f}, {h['dice_ci95'][1]:.3f}] | "
                      f"{100 * h['missed_by_mask']:.1f}% / {100 * h['missed_by_decision']:.1f}% | "
                      f"{100 * h['false_lesion']:.1f}% | {h['auc_benign_vs_malignant']:.3f} | "
                      f"{h['balanced_accuracy']:.3f} | {v['score']:.4f} | {i['dice']:.3f} / {i['balanced_accuracy']:.3f} |")
    md += ["", "| candidate | mean held-out score |", "| --- | ---: |"]
    md += [f"| {r['candidate']} | {r['score']:.4f} |" for r in rows]
    print("\n".join(md))
    (args.out / "loso.json").write_text(json.dumps({"epochs": args.epochs, "procs": args.procs, "rows": rows}, indent=1))
    (args.out / "loso.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
