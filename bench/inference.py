#!/usr/bin/env python
"""Reproducible CPU inference benchmark of sonoseg's deployment models.

Default run (what the README's table comes from)::

    .venv/bin/python bench/inference.py                 # shipped model if present, else untrained
                                                        # FPN-mobilenet_v2 + U-Net-mobilenet_v2 (smp)
    .venv/bin/python bench/inference.py --dynamic-int8  # + dynamic int8 rows (shows why not default)
    .venv/bin/python bench/inference.py --compare       # + classic U-Net (base 64) and MONAI UNet

Rows: fp32 torch eager, fp32 onnxruntime, static int8 onnxruntime (QDQ, U8S8), at 1 and 2 threads,
256x256, batch 1 (and --batch N for throughput); "model" rows time the network alone, "e2e" rows
time uint8 frame -> mask in original pixels (preprocess + inference + postprocess). Each row runs
in its own process so peak RSS is that backend's alone. Writes JSON and a Markdown table.
Latency does not depend on the weights, so untrained models give representative timings.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, help="model to time (default: shipped model, else untrained smp models)")
    ap.add_argument("--untrained", action="store_true", help="time untrained FPN/U-Net mobilenet_v2 even if a default exists")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch", default="1")
    ap.add_argument("--backends", default="torch,onnx,onnx-int8")
    ap.add_argument("--dynamic-int8", action="store_true")
    ap.add_argument("--compare", action="store_true")
    ap.add_argument("--no-e2e", action="store_true")
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--max-seconds", type=float, default=10.0)
    ap.add_argument("--dataset", type=Path, help="frames for e2e rows / int8 calibration (default: phantoms)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args(argv)

    from rich.console import Console

    from sonoseg.bench.benchmark import (
        BenchmarkPlan,
        BenchModel,
        comparison_models,
        machine_info,
        registry_model,
        rows_markdown,
        rows_table,
        run_benchmark,
    )

    console = Console(stderr=True)
    models = []
    if args.checkpoint is not None:
        models.append(BenchModel.from_source(args.checkpoint))
    elif not args.untrained:
        try:
            from sonoseg.infer.default_model import default_model_path

            models.append(BenchModel.from_source(default_model_path(), label="default"))
        except Exception as exc:  # noqa: BLE001 - no shipped model in this checkout
            console.print(f"[yellow]no shipped default model ({exc}); timing untrained models[/]")
    if not models:
        hw = (args.size, args.size)
        models = [registry_model("fpn", "mobilenet_v2", hw), registry_model("unet_smp", "mobilenet_v2", hw)]
    if args.compare:
        models += comparison_models(tuple(models[0].config.preprocess.size))
    backends = tuple(b for b in args.backends.split(",") if b)
    if args.dynamic_int8 and "onnx-int8-dynamic" not in backends:
        backends += ("onnx-int8-dynamic",)
    plan = BenchmarkPlan(backends=backends, threads=tuple(int(t) for t in args.threads.split(",")),
                         batches=tuple(int(b) for b in args.batch.split(",")), e2e=not args.no_e2e,
                         iters=args.iters, max_seconds=args.max_seconds, isolate=True)
    frames = calib = None
    if args.dataset is not None:
        from sonoseg.bench.frames import dataset_frames

        frames, calib = dataset_frames(args.dataset, models[0].config)
    rows = run_benchmark(models, plan, calib_images=calib, frames=frames,
                         log=lambda m: console.print(f"[dim]{m}[/]"))
    out_console = Console()
    (out_console if out_console.is_terminal else Console(width=140)).print(rows_table(rows))
    args.out.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    (args.out / "inference.json").write_text(json.dumps({"machine": info, "rows": rows}, indent=2))
    md = f"Machine: {info.get('cpu', '?')}, {info.get('cpu_count')} logical CPUs, ISA {', '.join(info.get('isa', []))}; " \
         f"torch {info.get('torch')}, onnxruntime {info.get('onnxruntime')}; 1-min load {info.get('loadavg_1min', '?')}\n\n"
    (args.out / "inference.md").write_text(md + rows_markdown(rows))
    console.print(f"wrote {args.out / 'inference.json'} and {args.out / 'inference.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
