"""``sonoseg benchmark``: latency / frames/s / peak memory of each inference backend on this machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from sonoseg.cli._common import console, err_console, fail, handle_errors, model_flags


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        vals = ()
    if not vals or min(vals) < 1:
        fail(f"--{what} must be a comma-separated list of positive integers, got {text!r}", code=2)
    return vals


def register(app: typer.Typer) -> None:
    @app.command("benchmark")
    @handle_errors
    def benchmark_cmd(
        model: Optional[str] = typer.Option(None, "--model", "-m", help="Trained model file (.pt/.ts), or fast | accurate | v3, to time; default: fast."),
        arch: Optional[str] = typer.Option(None, "--arch", help="Time an untrained registry architecture instead (e.g. fpn)."),
        checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", hidden=True, help="Deprecated: use --model."),
        encoder: Optional[str] = typer.Option(None, "--encoder", help="Encoder for --arch (e.g. mobilenet_v2)."),
        size: int = typer.Option(256, help="Model input side for --arch (grid size)."),
        backends: str = typer.Option("torch,onnx,onnx-int8", help="Comma list: torch, torch-compile, onnx, onnx-int8, onnx-int8-dynamic."),
        threads: str = typer.Option("1,2", help="Comma list of thread counts."),
        batch: str = typer.Option("1", help="Comma list of batch sizes for model rows (throughput at batch N)."),
        e2e: bool = typer.Option(True, "--e2e/--no-e2e", help="Add end-to-end rows (uint8 frame -> mask in original pixels)."),
        compare: bool = typer.Option(False, "--compare", help="Add the seed's classic U-Net (base 64) and MONAI's UNet."),
        dynamic_int8: bool = typer.Option(False, "--dynamic-int8", help="Add onnx-int8-dynamic rows (slow on CPU convs)."),
        dataset: Optional[Path] = typer.Option(None, "--dataset", help="Use these images as e2e frames and int8 calibration."),
        iters: int = typer.Option(50, min=1, help="Timed iterations per row (at most)."),
        warmup: int = typer.Option(3, min=0, help="Untimed warm-up iterations per row."),
        max_seconds: float = typer.Option(10.0, help="Stop a row's timing after this long (>= 5 iterations)."),
        isolate: bool = typer.Option(True, "--isolate/--no-isolate", help="One fresh process per row (clean peak RSS)."),
        json_out: Optional[Path] = typer.Option(None, "--json", help="Write the rows (+ machine info) as JSON."),
    ) -> None:
        """Time torch / ONNX / int8 backends at 1 and 2 threads (model-only and end-to-end rows)."""
        from sonoseg.bench.benchmark import (
            BenchmarkPlan,
            BenchModel,
            comparison_models,
            machine_info,
            registry_model,
            rows_table,
            run_benchmark,
        )
        from sonoseg.runtime.backends import KINDS

        kinds = tuple(dict.fromkeys(b.strip() for b in backends.split(",") if b.strip()))
        if dynamic_int8 and "onnx-int8-dynamic" not in kinds:
            kinds += ("onnx-int8-dynamic",)
        bad = [k for k in kinds if k not in KINDS]
        if bad or not kinds:
            fail(f"unknown backend(s) {', '.join(bad) or '(none)'}; choose from {', '.join(KINDS)}", code=2)
        plan = BenchmarkPlan(backends=kinds, threads=_ints(threads, "threads"), batches=_ints(batch, "batch"), e2e=e2e,
                             warmup=warmup, iters=iters, max_seconds=max_seconds, isolate=isolate)
        checkpoint, arch = model_flags(model, arch, checkpoint)
        if arch:
            models = [registry_model(arch, encoder, (size, size))]
        else:
            from sonoseg.models.shipped import resolve_model

            models = [BenchModel.from_source(resolve_model(checkpoint, "predict"))]
        if compare:
            models += comparison_models(tuple(models[0].config.preprocess.size))
        frames = calib = None
        if dataset is not None:
            from sonoseg.bench.frames import dataset_frames

            frames, calib = dataset_frames(dataset, models[0].config)
        say = lambda m: err_console.print(f"[dim]{m}[/]", highlight=False)  # noqa: E731
        rows = run_benchmark(models, plan, calib_images=calib, frames=frames, log=say)
        from rich.console import Console

        # rich clamps to the console width (80 when piped): give logs a wide console so no column is cut
        info = machine_info()
        title = (f"sonoseg inference benchmark: {info['cpu_label']}, AVX2 {'yes' if info['avx2'] else 'no'}, "
                 f"AVX-512 {'yes' if info['avx512'] else 'no'}, VNNI {'yes' if info['vnni'] else 'no'}, "
                 f"int8 scheme {info['int8_scheme']}")
        (console if console.is_terminal else Console(width=140, highlight=False)).print(rows_table(rows, title))
        for r in rows:
            if r.get("status") != "ok":
                err_console.print(f"[yellow]{r['backend']} ({r['model']}) {r['status']}:[/] {r['note']}", highlight=False)
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps({"machine": info, "rows": rows}, indent=2))
            console.print(f"[green]wrote[/] {json_out}")
