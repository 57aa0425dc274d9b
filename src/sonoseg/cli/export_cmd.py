"""``sonoseg export``: checkpoint -> ONNX (+ static int8) + TorchScript, each checked on the validation split.

Exit codes: 0 all formats written; 1 a format was refused (its Dice drop exceeded --tolerance; that
file was not written, the others were); 2 bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from sonoseg.cli._common import console, fail, handle_errors, model_flags


def _default_checkpoint() -> Path:
    try:
        from sonoseg.models import default_model_path  # type: ignore[attr-defined]
    except ImportError:
        from sonoseg.infer.default_model import default_model_path
    return default_model_path()


def register(app: typer.Typer) -> None:
    @app.command("export")
    @handle_errors
    def export_cmd(
        dataset: Path = typer.Option(..., "--dataset", help="Dataset folder (images/, masks/) the model was trained on."),
        split_file: Path = typer.Option(..., "--split-file", help="Split CSV: calibration from train, checks on val."),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
        model: Optional[Path] = typer.Option(None, "--model", "-m", help="Trained model checkpoint (.pt); default: shipped model."),
        checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", hidden=True, help="Deprecated: use --model."),
        int8: bool = typer.Option(True, "--int8/--no-int8", help="Also write a static int8 ONNX model."),
        torchscript: bool = typer.Option(True, "--torchscript/--no-torchscript", help="Also write TorchScript (.ts)."),
        tolerance: float = typer.Option(0.01, help="Largest allowed validation Dice drop versus PyTorch."),
        calib_n: int = typer.Option(64, "--calib-n", min=1, help="Training images used to calibrate int8."),
        val_n: Optional[int] = typer.Option(None, "--val-n", min=1, help="Validate on a random subset of this size."),
        threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads for the checks."),
        calibration: str = typer.Option("minmax", help="int8 calibration: minmax | percentile | entropy."),
        stem: str = typer.Option("model", help="Output file stem: STEM.onnx, STEM.int8.onnx, STEM.ts."),
    ) -> None:
        """Export for deployment; refuses (exit 1, file not written) a model whose Dice drops > tolerance."""
        import torch

        from sonoseg.export import ExportRefused, export_model, split_grids
        from sonoseg.infer.backends import load_torch_model

        if threads:
            torch.set_num_threads(threads)
        model, _ = model_flags(str(model) if model else None, None, checkpoint)
        ckpt = model or _default_checkpoint()
        _, cfg = load_torch_model(ckpt)
        if cfg is None:
            fail(f"{ckpt}: carries no sonoseg config", code=2)
        formats = ["onnx"] + (["onnx-int8"] if int8 else []) + (["torchscript"] if torchscript else [])
        say = lambda m: console.print(m, highlight=False, soft_wrap=True)  # noqa: E731
        calib = None
        if int8:
            calib = [img for img, _ in split_grids(dataset, split_file, cfg.data.train_split, cfg, n=calib_n)]
            say(f"calibration: {len(calib)} images of split {cfg.data.train_split!r} (preprocessed as in training)")
        val = split_grids(dataset, split_file, cfg.data.val_split, cfg, n=val_n, seed=1)
        say(f"validation: {len(val)} images of split {cfg.data.val_split!r}")
        try:
            report = export_model(ckpt, out, formats, calib, val, tolerance, threads=threads, stem=stem,
                                  calibrate_method=calibration, log=say)
        except ExportRefused as exc:
            for line in exc.report.lines():
                say(line)
            fail(str(exc), code=1)
            return
        for line in report.lines():
            say(line)
        console.print(f"[green]wrote[/] {', '.join(report.files.values())} and {out / 'export_report.json'}",
                      soft_wrap=True)
