#!/usr/bin/env python
"""Where a training step of a recipe spends its time: forward, backward, optimiser (no data loading).

    .venv/bin/python bench/train_step.py -c configs/busi_v3.yaml

The recipe's model (random weights; speed does not depend on them) on synthetic batches at the
recipe's input size, Dice+BCE-like loss plus the class head's cross-entropy, AdamW, gradient clipping:
the compute floor of one epoch, beside ``bench/train_epoch.py``'s whole epochs. Each setting runs in a
fresh process (thread pools do not shrink in place), 2 warm-up steps then the median of ``--steps``.
Settings: 1 thread with half the batch (one DDP rank of two) and all threads with the whole batch,
NCHW and channels_last, and with ``--compile`` channels_last under ``torch.compile`` (on the 2-core AMD EPYC
it made the v3 recipe's step 1.3-1.7x slower in three runs, its backward pass 1.6-2x,
bench/results/train_step_compile.md: the trainer does not compile). Prints a table; writes JSON (and Markdown)
under bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def measure(config: str, threads: int, batch: int, channels_last: bool, steps: int, compiled: bool = False) -> dict:
    """One setting, in this process."""
    import torch

    sys.path.insert(0, str(REPO / "src"))
    from sonoseg.config import load_config
    from sonoseg.models import create_model_from_config
    from sonoseg.models.padding import split_outputs

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = load_config(config)
    cfg.model.encoder_weights = None
    model = create_model_from_config(cfg.model).train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    if compiled:  # TorchInductor: fuses batch norm, activations and their backward into C++ loops
        model = torch.compile(model)
    h, w = cfg.preprocess.size
    x = torch.rand(batch, cfg.model.in_channels, h, w).contiguous(memory_format=fmt)
    y = (torch.rand(batch, 1, h, w) > 0.7).float()
    cls = torch.randint(0, 3, (batch,))
    opt = torch.optim.AdamW(model.parameters(), 1e-3)

    def step() -> tuple[float, float, float]:
        t0 = time.perf_counter()
        seg, logits = split_outputs(model(x))
        p = torch.sigmoid(seg)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(seg, y) + \
            1 - (2 * (p * y).sum() + 1) / (p.sum() + y.sum() + 1)
        if logits is not None:
            loss = loss + 0.5 * torch.nn.functional.cross_entropy(logits, cls)
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return t1 - t0, t2 - t1, time.perf_counter() - t2

    t_warm = time.perf_counter()
    for _ in range(2):
        step()
    warm_s = time.perf_counter() - t_warm
    f, b, o = (statistics.median(v) for v in zip(*[step() for _ in range(steps)]))
    return {"threads": threads, "batch": batch, "channels_last": channels_last, "compiled": compiled,
            "warm_up_s": warm_s, "forward_s": f, "backward_s": b,
            "optimizer_s": o, "step_s": f + b + o, "images_per_s": batch / (f + b + o)}


def _layout(r: dict) -> str:
    return ("NHWC" if r["channels_last"] else "NCHW") + (", compiled" if r.get("compiled") else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-c", "--config", default=str(REPO / "configs" / "busi_v3.yaml"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "train_step.json")
    ap.add_argument("--compile", action="store_true",
                    help="add NHWC rows with the model under torch.compile (TorchInductor; needs a C++ compiler)")
    ap.add_argument("--rounds", type=int, default=1, help="repeat the settings, interleaved, this many times")
    ap.add_argument("--all-threads-only", action="store_true", help="skip the 1-thread (one DDP rank) rows")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: threads,batch,cl,compiled
    args = ap.parse_args()
    if args.one:
        t, b, cl, comp = args.one.split(",")
        print(json.dumps(measure(args.config, int(t), int(b), cl == "1", args.steps, comp == "1")))
        return
    per_thread = [(0, 0), (1, 0)] + ([(1, 1)] if args.compile else [])
    settings = [] if args.all_threads_only else [(1, args.batch_size // args.threads, cl, c) for cl, c in per_thread]
    settings += [(args.threads, args.batch_size, cl, c) for cl, c in per_thread]
    rows = []
    for _ in range(args.rounds):
        for t, b, cl, comp in settings:
            env = dict(os.environ, OMP_NUM_THREADS=str(t))
            out = subprocess.run([sys.executable, __file__, "-c", args.config, "--steps", str(args.steps),
                                  "--one", f"{t},{b},{cl},{comp}"], check=True, capture_output=True, text=True, env=env)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"{t} thread(s), batch {b}, {_layout(r)}: {r['images_per_s']:.2f} img/s "
                  f"(warm-up {r['warm_up_s']:.0f} s)", flush=True)
    from train_epoch import cpu_name  # this folder is on sys.path when run as a script

    title = f"one training step of {Path(args.config).name} (synthetic batches, no data loading), {cpu_name()}, {os.cpu_count()} cores"
    md = [f"### {title}", "", "| threads | batch | layout | forward s | backward s | optimiser s | images/s |",
          "| ---: | ---: | --- | ---: | ---: | ---: | ---: |"]
    md += [f"| {r['threads']} | {r['batch']} | {_layout(r)} | {r['forward_s']:.3f} | "
           f"{r['backward_s']:.3f} | {r['optimizer_s']:.3f} | {r['images_per_s']:.2f} |" for r in rows]
    best1 = max((r["images_per_s"] for r in rows if r["threads"] == 1), default=float("nan"))
    bestn = max(r["images_per_s"] for r in rows if r["threads"] == args.threads)
    md += [""]
    if best1 == best1:  # not NaN: the 1-thread rows ran
        md += [f"{args.threads} threads reach {bestn / (args.threads * best1):.0%} of {args.threads} x the 1-thread "
               "rate "
               f"({bestn:.2f} vs {args.threads} x {best1:.2f}). "]
    md[-1] += ("With data loading excluded, this is the floor of an epoch's training time in one process; "
               "bench/train_epoch.py measures DDP against it.")
    print("\n".join(md))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"title": title, "rows": rows, "one_thread_images_per_s": best1, "all_threads_images_per_s": bestn,
                                     "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, indent=2))
    args.json.with_suffix(".md").write_text("\n".join(md) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
