#!/usr/bin/env python
"""What would a smaller student network buy? Model-only int8 latency of candidate architectures.

The end-to-end target of issue 8 (>= 100 frames/s at 2 threads on an AVX2-only CPU) leaves 10 ms per
frame; the shipped networks alone take more than that, so the model, not the preprocessing,
decides it. This script times untrained candidates (latency does not depend on the weights) through
the same export + static int8 (the scheme this CPU gets) + onnxruntime path as the shipped model,
each row in a fresh process, and prints frames/s next to the shipped model's.

    .venv/bin/python bench/student_speed.py                 # 256x256, 1 and 2 threads
    .venv/bin/python bench/student_speed.py --threads 2 --iters 100

Writes bench/results/student_speed.json and .md. Accuracy is not measured here: a candidate is a
student only once it has been distilled from the default and passed the same validation rule.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# (label, arch, encoder, params, input size)
CANDIDATES = [
    ("v2 default: FPN mobilenet_v2 (p64/s32)", "fpn", "mobilenet_v2",
     {"decoder_pyramid_channels": 64, "decoder_segmentation_channels": 32}, 256),
    ("v3: FPN efficientnet-lite0 (p64/s32)", "fpn", "timm-tf_efficientnet_lite0",
     {"decoder_pyramid_channels": 64, "decoder_segmentation_channels": 32}, 256),
    ("FPN mobilenet_v2 p32/s32", "fpn", "mobilenet_v2",
     {"decoder_pyramid_channels": 32, "decoder_segmentation_channels": 32}, 256),
    ("FPN efficientnet-lite0 p32/s32", "fpn", "timm-tf_efficientnet_lite0",
     {"decoder_pyramid_channels": 32, "decoder_segmentation_channels": 32}, 256),
    ("LinkNet mobilenet_v2", "linknet", "mobilenet_v2", {}, 256),
    ("U-Net mobilenet_v2 (64,32,16,16,8)", "unet_smp", "mobilenet_v2",
     {"decoder_channels": [64, 32, 16, 16, 8]}, 256),
    ("v2 default at 224x224 input", "fpn", "mobilenet_v2",
     {"decoder_pyramid_channels": 64, "decoder_segmentation_channels": 32}, 224),
    ("v2 default at 192x192 input", "fpn", "mobilenet_v2",
     {"decoder_pyramid_channels": 64, "decoder_segmentation_channels": 32}, 192),
]


def _params_m(module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--iters", type=int, default=60)
    ap.add_argument("--max-seconds", type=float, default=8.0)
    ap.add_argument("--only", help="comma-separated substrings of candidate labels")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    from sonoseg.bench.benchmark import BenchmarkPlan, machine_info, registry_model, run_benchmark

    console = Console(stderr=True)
    threads = tuple(int(t) for t in args.threads.split(","))
    plan = BenchmarkPlan(backends=("onnx-int8",), threads=threads, e2e=False, iters=args.iters,
                         max_seconds=args.max_seconds, isolate=True)
    results = []
    for label, arch, enc, params, size in CANDIDATES:
        if args.only and not any(s in label for s in args.only.split(",")):
            continue
        try:
            bm = registry_model(arch, enc, (size, size), label=label, **params)
        except Exception as exc:  # noqa: BLE001 - an encoder this smp/timm lacks: say so, go on
            console.print(f"[yellow]{label}: not buildable here ({type(exc).__name__}: {exc})[/]")
            continue
        rows = run_benchmark([bm], plan, log=lambda m: console.print(f"[dim]{m}[/]"))
        for r in rows:
            r.update(params_m=round(_params_m(bm.module), 2), input=size)
            results.append(r)
    info = machine_info()
    table = Table(title=f"int8 model-only latency, {info.get('cpu', '?')} ({', '.join(info.get('isa', []))})")
    for col in ("candidate", "input", "params M", "threads", "median ms", "frames/s", "status"):
        table.add_column(col)
    for r in results:
        table.add_row(r["model"], str(r["input"]), f"{r['params_m']:.2f}", str(r["threads"]),
                      "-" if r["median_ms"] is None else f"{r['median_ms']:.1f}",
                      "-" if r["fps"] is None else f"{r['fps']:.0f}", r["status"] + (f" {r['note']}" if r["note"] else ""))
    out = Console()
    (out if out.is_terminal else Console(width=160)).print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "student_speed.json").write_text(json.dumps({"machine": info, "rows": results}, indent=2))
    md = [f"Machine: {info.get('cpu', '?')}, ISA {', '.join(info.get('isa', []))}, 1-min load "
          f"{info.get('loadavg_1min', '?')}; int8 scheme {info.get('int8_scheme', '?')}", "",
          "| candidate | input | params M | threads | median ms | frames/s |", "|---|--:|--:|--:|--:|--:|"]
    md += [f"| {r['model']} | {r['input']} | {r['params_m']:.2f} | {r['threads']} | {r['median_ms']} | {r['fps']} |"
           for r in results if r["status"] == "ok"]
    (args.out / "student_speed.md").write_text("\n".join(md) + "\n")
    console.print(f"wrote {args.out / 'student_speed.json'} and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
