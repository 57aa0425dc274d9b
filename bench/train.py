#!/usr/bin/env python
"""Training-speed benchmark (CPU) and the Dice-vs-wall-clock curve of the default model's training.

    .venv/bin/python bench/train.py                      # default model + classic U-Net (base 64) at 256x256
    .venv/bin/python bench/train.py --run runs/default   # also plot that run's val Dice against wall clock

Images/s are measured on full training steps (forward, Dice+BCE loss, backward, AdamW step) with
random 256x256 batches, after warm-up steps, with torch's thread count set to --threads. The data
pipeline is not timed here (it is cached after the first epoch; see bench/ingest.py for decode +
preprocess throughput). Prints a table and writes JSON (+ a PNG of the curve when --run is given).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from sonoseg.config import load_config
from sonoseg.models import count_parameters, create_model, create_model_from_config
from sonoseg.train.losses import build_loss

REPO = Path(__file__).resolve().parents[1]


def time_training(model: torch.nn.Module, batch: int, size: int, steps: int, warmup: int) -> dict:
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = build_loss("dice_bce", classes=1)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 1, size, size, generator=g)
    y = (torch.rand(batch, 1, size, size, generator=g) > 0.8).float()
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"batch": batch, "steps": steps, "median_step_s": med, "images_per_s": batch / med}


def dice_vs_wallclock(run: Path, png: Path) -> dict:
    from sonoseg.train.history import read_rows

    rows = read_rows(run / "metrics.csv")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [r["elapsed_seconds"] / 60 for r in rows]
    dice = [r["val_dice"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(minutes, dice, marker=".")
    ax.set_xlabel("wall clock (min, 2-core CPU)")
    ax.set_ylabel("validation Dice")
    ax.set_title(f"{run.name}: val Dice vs training time")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    best = max(range(len(rows)), key=lambda i: dice[i]) if rows else None
    return {"epochs": len(rows), "minutes": minutes, "val_dice": dice,
            "best": None if best is None else {"epoch": rows[best]["epoch"], "val_dice": dice[best], "minutes": minutes[best]},
            "png": str(png)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--run", type=Path, help="a training run directory (metrics.csv) for the Dice-vs-time curve")
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "train.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    default_cfg = load_config(REPO / "configs" / "busi_default.yaml")
    models = {
        f"default ({default_cfg.model.name}-{default_cfg.model.encoder})": create_model_from_config(default_cfg.model),
        "classic U-Net base 64 (seed 000/003)": create_model("unet", base_channels=64),
        "classic U-Net base 16": create_model("unet", base_channels=16),
    }
    rows = []
    from rich.console import Console
    from rich.table import Table

    for name, model in models.items():
        batch = args.batch if "base 64" not in name else max(2, args.batch // 4)
        r = time_training(model, batch, args.size, args.steps if "base 64" not in name else 3, warmup=1)
        r.update(model=name, params_m=count_parameters(model) / 1e6, threads=args.threads, size=args.size,
                 epoch_s_busi_train=453 / r["images_per_s"])
        rows.append(r)
        print(f"{name}: {r['images_per_s']:.1f} img/s", flush=True)
    table = Table(title=f"training throughput, {args.size}x{args.size}, {args.threads} threads ({platform.processor() or platform.machine()})")
    for c in ("model", "params (M)", "batch", "s/step", "images/s", "BUSI epoch (453 img) s"):
        table.add_column(c, justify="left" if c == "model" else "right")
    for r in rows:
        table.add_row(r["model"], f"{r['params_m']:.2f}", str(r["batch"]), f"{r['median_step_s']:.2f}",
                      f"{r['images_per_s']:.1f}", f"{r['epoch_s_busi_train']:.0f}")
    Console().print(table)
    out = {"rows": rows, "torch": torch.__version__, "threads": args.threads}
    if args.run:
        out["curve"] = dice_vs_wallclock(args.run, args.json.with_name("train_dice_vs_time.png"))
        b = out["curve"]["best"]
        if b:
            print(f"best val Dice {b['val_dice']:.4f} at epoch {b['epoch']} after {b['minutes']:.1f} min")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
