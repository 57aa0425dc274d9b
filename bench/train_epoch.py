#!/usr/bin/env python
"""Seconds per training epoch of a real recipe on real data, one setting against another, interleaved.

    .venv/bin/python bench/train_epoch.py ../shared/data/busi --split-file configs/busi_split.csv \
        -c configs/busi_v3.yaml --repeat 2

Each run is the real ``sonoseg train`` code path (cached preprocessing, augmentation, forward/backward,
AdamW, validation, checkpoint writing) for one epoch in a fresh process, once per setting and repeat,
settings interleaved so that drifting machine load hits them alike. Settings: ``train.channels_last``
false ("before": NCHW, the v3 trainer) and true ("after"), in one process of ``--threads`` threads, and
"after" as ``--threads`` DDP processes of 1 thread each (torchrun, the batch split between them). Reported: the epoch's seconds (training +
validation, from metrics.csv) and training images per second of wall clock (train images / epoch
seconds, the issue's measure). The preprocessing cache is filled before the first timed run and is not
timed. Prints a table; writes JSON (and Markdown) under bench/results/.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DDP = "after, DDP processes of 1 thread"  # as many processes as --threads
SETTINGS = {"before (NCHW)": ["train.channels_last=false"], "after (channels_last)": ["train.channels_last=true"],
            DDP: ["train.channels_last=true"]}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def one_epoch(args, overrides: list[str], out: Path, cache: Path, ddp: bool = False) -> dict:
    """One epoch in a fresh process; ``ddp``: ``torchrun`` with ``args.threads`` processes of 1 thread,
    each with half the batch (the same global batch, so the same optimiser steps per epoch)."""
    if ddp:
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.threads}",
                  "-m", "sonoseg"]
        per_proc = ["--threads", "1", "--batch-size", str(max(1, args.batch_size // args.threads))]
    else:
        launch = [sys.executable, "-m", "sonoseg"]
        per_proc = ["--threads", str(args.threads)]
    cmd = [*launch, "train", str(args.dataset), "--split-file", str(args.split_file),
           "-c", str(args.config), "--epochs", "1", *per_proc, "--no-progress",
           "--out", str(out), "--set", f"data.cache_dir={cache}", "--set", "model.encoder_weights=null"]
    for o in overrides:
        cmd += ["--set", o]
    env = dict(os.environ, OMP_NUM_THREADS="1" if ddp else str(args.threads))
    t0 = time.time()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = max(out.iterdir(), key=lambda p: p.stat().st_mtime)
    with (run / "metrics.csv").open() as fh:
        row = next(csv.DictReader(fh))
    samples = json.loads((run / "samples.json").read_text())
    n_train = len(samples["train"])
    sec = float(row["epoch_seconds"])
    return {"epoch_s": sec, "train_images": n_train, "val_images": len(samples["val"]),
            "images_per_s": n_train / sec, "process_s": time.time() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--split-file", type=Path, required=True)
    ap.add_argument("-c", "--config", type=Path, default=REPO / "configs" / "busi_v3.yaml")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8, help="the recipe's batch (the DDP setting splits it)")
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "train_epoch.json")
    args = ap.parse_args()
    if not args.dataset.is_dir():
        sys.exit(f"{args.dataset}: dataset folder not found")
    runs: dict[str, list[dict]] = {k: [] for k in SETTINGS}
    with tempfile.TemporaryDirectory(prefix="sonoseg-bench-train-") as tmp:
        tmp = Path(tmp)
        cache = tmp / "cache"
        print("filling the preprocessing cache (not timed) ...", flush=True)
        one_epoch(args, SETTINGS["after (channels_last)"], tmp / "warm", cache)
        for r in range(args.repeat):
            for name, overrides in SETTINGS.items():
                res = one_epoch(args, overrides, tmp / f"{r}-{len(runs[name])}-{name[:6]}", cache, ddp=name == DDP)
                runs[name].append(res)
                print(f"repeat {r + 1}: {name}: {res['epoch_s']:.1f} s/epoch, {res['images_per_s']:.2f} train img/s",
                      flush=True)
    rows = []
    for name, rs in runs.items():
        rows.append({"setting": name, "runs": len(rs), "epoch_s_median": statistics.median(r["epoch_s"] for r in rs),
                     "images_per_s_median": statistics.median(r["images_per_s"] for r in rs),
                     "images_per_s_all": [round(r["images_per_s"], 2) for r in rs],
                     "train_images": rs[0]["train_images"], "val_images": rs[0]["val_images"]})
    title = (f"one epoch of {args.config.name} on {args.dataset.name} ({rows[0]['train_images']} train + "
             f"{rows[0]['val_images']} val images), {args.threads} threads, {cpu_name()}, {os.cpu_count()} cores")
    md = [f"### {title}", "", "| setting | runs | s/epoch (median) | train images/s (median) | all runs |",
          "| --- | ---: | ---: | ---: | --- |"]
    md += [f"| {r['setting']} | {r['runs']} | {r['epoch_s_median']:.1f} | {r['images_per_s_median']:.2f} | "
           f"{', '.join(map(str, r['images_per_s_all']))} |" for r in rows]
    print("\n".join(md))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"title": title, "cpu": cpu_name(), "threads": args.threads, "rows": rows,
                                     "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, indent=2))
    args.json.with_suffix(".md").write_text("\n".join(md) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
