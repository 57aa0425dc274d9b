"""``sonoseg predict``: segment DICOM / NIfTI / image files with a model (default: the shipped one)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from sonoseg.cli._common import THREADS_OPTION

from sonoseg.cli._common import console, error_line, handle_errors, note_line, parse_tta


def run_predict(inputs, out, model, backend, threads, batch_size, seg, keep_largest, min_size, fill_holes, tta,
                strict, progress_bars) -> dict:
    from rich.table import Table

    from sonoseg.infer.default_model import sample_dicom_dir
    from sonoseg.infer.run import predict_inputs

    if not inputs:
        inputs = [sample_dicom_dir()]
        console.print(f"no inputs given: using the shipped sample DICOMs in {inputs[0]}")
    payload = predict_inputs(list(inputs), out, model, backend, threads, batch_size, seg, keep_largest, min_size,
                             fill_holes, parse_tta(tta), log=lambda m: None, show_progress=progress_bars,
                             notify=note_line)
    table = Table(title=f"sonoseg predict -> {out}")
    for c in ("input", "frames", "structures", "largest area", "max diameter", "SEG"):
        table.add_column(c, justify="left" if c == "input" else "right")
    for r in payload["results"]:
        if r["ok"]:
            s = r["summary"]
            unit = s.get("unit", "px")
            table.add_row(Path(r["input"]).name, str(r["frames"]), str(s.get("max_structures_per_frame", "")),
                          f"{s.get('max_area', 0):.1f} {unit}²", f"{s.get('max_diameter', 0):.1f} {unit}",
                          "yes" if r.get("seg") else "-")
    console.print(table)
    for r in payload["results"]:
        if not r["ok"]:
            error_line(r["error"])
    console.print(f"{payload['n_ok']} ok, {payload['n_failed']} failed; results in {Path(out) / 'results.json'}")
    if payload["n_ok"] == 0 or (strict and payload["n_failed"]):
        raise typer.Exit(1)
    return payload


def register(app: typer.Typer) -> None:
    @app.command("predict")
    @handle_errors
    def predict_cmd(
        inputs: List[Path] = typer.Argument(None, help="DICOM/NIfTI/image files or folders (default: shipped samples)."),
        out: Path = typer.Option(Path("predictions"), "--out", "-o", help="Output folder."),
        model: Optional[Path] = typer.Option(None, "--model", "-m", help="Checkpoint .pt, .onnx (default: shipped model)."),
        backend: str = typer.Option("auto", help="auto (fastest backend that is exact on this CPU) | torch | "
                                    "torch-compile | onnx | onnx-int8"),
        threads: Optional[int] = THREADS_OPTION,
        batch_size: int = typer.Option(8, help="Frames per inference batch (cine is streamed)."),
        seg: bool = typer.Option(True, "--seg/--no-seg", help="Write a DICOM SEG for DICOM inputs."),
        keep_largest: Optional[bool] = typer.Option(None, "--keep-largest/--no-keep-largest", help="Keep only the largest component (default: the model's setting)"),
        min_size: Optional[int] = typer.Option(None, help="Remove components smaller than this many pixels (default: the model's setting)"),
        fill_holes: Optional[bool] = typer.Option(None, "--fill-holes/--no-fill-holes", help="Fill holes in masks (default: the model's setting)"),
        tta: List[str] = typer.Option([], help="Test-time flips h and/or v, or none (default: the model's setting)."),
        strict: bool = typer.Option(False, help="Exit non-zero if any input failed."),
        progress_bars: bool = typer.Option(True, "--progress/--no-progress"),
    ) -> None:
        """Masks in original geometry, overlays, measurements (mm) and DICOM SEG; OUT/results.json lists all."""
        run_predict(inputs, out, model, backend, threads, batch_size, seg, keep_largest, min_size, fill_holes, tta,
                    strict, progress_bars)
