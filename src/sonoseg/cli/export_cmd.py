"""``sonoseg export``: checkpoint -> ONNX (+ static int8) + TorchScript, each checked against PyTorch.

With ``--dataset``/``--split-file``: int8 calibrated on the training split, every format checked on the
validation split (Dice change and mask agreement). Without them: calibrated on the calibration
frames shipped with sonoseg (breast ultrasound) and checked for mask agreement with PyTorch on the
other half of those frames -- enough for the shipped models and fp32; for a model of another domain
give its dataset.

Exit codes: 0 all formats written; 1 a format was refused (Dice drop over --tolerance or mask
agreement under --min-agreement / --min-worst-agreement; that file was not written, the others
were); 2 bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from sonoseg.cli._common import THREADS_OPTION, console, fail, handle_errors, model_flags, per_dataset


def _checkpoint(model: Optional[Path]) -> Path:
    """``--model``: a file, or a shipped name (fast, accurate, v3); none: the fast tier (what a cart runs)."""
    from sonoseg.models.shipped import resolve_model

    return resolve_model(model, "export")


def register(app: typer.Typer) -> None:
    @app.command("export")
    @handle_errors
    def export_cmd(
        datasets: List[Path] = typer.Option([], "--dataset", help="Dataset folder (images/, masks/) the model was "
                                            "trained on (default: the shipped calibration frames); repeat for a "
                                            "model trained on several sources: calibration and checks use every one."),
        split_files: List[Path] = typer.Option([], "--split-file", help="Split CSV: calibration from train, checks "
                                               "on val (needed with --dataset; one per --dataset, in order)."),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
        model: Optional[Path] = typer.Option(None, "--model", "-m", help="Trained model checkpoint (.pt), or fast | accurate | v3; default: fast."),
        checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", hidden=True, help="Deprecated: use --model."),
        int8: bool = typer.Option(True, "--int8/--no-int8", help="Also write a static int8 ONNX model."),
        torchscript: bool = typer.Option(True, "--torchscript/--no-torchscript", help="Also write TorchScript (.ts)."),
        tolerance: float = typer.Option(0.01, help="Largest allowed validation Dice drop versus PyTorch."),
        calib_n: int = typer.Option(64, "--calib-n", min=1, help="Training images used to calibrate int8."),
        val_n: Optional[int] = typer.Option(None, "--val-n", min=1, help="Validate on a random subset of this size."),
        threads: Optional[int] = THREADS_OPTION,
        scheme: Optional[str] = typer.Option(None, help="int8 scheme: u8s8 | u8s8-reduced | u8u8 (default: the one "
                                             "exact on this CPU: u8s8 with VNNI, else u8s8-reduced)."),
        min_agreement: float = typer.Option(0.97, help="Refuse a format whose masks agree with PyTorch's at a mean "
                                            "per-image Dice below this."),
        min_worst_agreement: float = typer.Option(0.5, help="... or at a worst per-image Dice below this."),
        calibration: str = typer.Option("minmax", help="int8 calibration: minmax | percentile | entropy."),
        stem: str = typer.Option("model", help="Output file stem: STEM.onnx, STEM.int8.onnx, STEM.ts."),
    ) -> None:
        """Export for deployment; refuses (exit 1, file not written) a format whose masks differ from PyTorch's."""
        say = lambda m: console.print(m, highlight=False, soft_wrap=True)  # noqa: E731
        from sonoseg.export import ExportOptions, ExportRefused, export_model, split_grids
        from sonoseg.runtime.backends import load_torch_model

        from sonoseg.system import apply_threads, resolve_threads

        threads = apply_threads(resolve_threads(threads, warn=say))
        formats = ["onnx"] + (["onnx-int8"] if int8 else []) + (["torchscript"] if torchscript else [])
        opts = ExportOptions(out_dir=out, formats=formats, tolerance=tolerance, min_agreement=min_agreement,
                             min_worst_agreement=min_worst_agreement, threads=threads, stem=stem, scheme=scheme,
                             calibrate_method=calibration)
        model, _ = model_flags(str(model) if model else None, None, checkpoint)
        ckpt = _checkpoint(model)
        _, cfg = load_torch_model(ckpt)
        if cfg is None:
            fail(f"{ckpt}: carries no sonoseg config", code=2)
        calib = None
        if datasets:
            per_dataset(split_files, datasets, "--split-file", required=True)  # calibration: train; checks: val
            calib, val = ([] if int8 else None), []
            for dataset, split_file in zip(datasets, split_files):  # each source in equal numbers
                if int8:
                    calib += [img for img, _ in split_grids(dataset, split_file, cfg.data.train_split, cfg,
                                                            n=max(1, calib_n // len(datasets)))]
                val += split_grids(dataset, split_file, cfg.data.val_split, cfg, n=None if val_n is None else max(1, val_n // len(datasets)), seed=1)
            if int8:
                say(f"calibration: {len(calib)} images of split {cfg.data.train_split!r} of {len(datasets)} source(s) "
                    "(preprocessed as in training)")
            say(f"validation: {len(val)} images of split {cfg.data.val_split!r} of {len(datasets)} source(s)")
        else:
            from sonoseg.runtime.calibration import calibration_grids

            calib, check = calibration_grids(cfg)
            val = [(g, None) for g in check]
            say(f"no --dataset: int8 calibrated on {len(calib)} shipped frames, every format checked for mask "
                f"agreement with PyTorch on {len(val)} others")
        try:
            report = export_model(ckpt, opts, calib_images=calib, val_pairs=val, log=say)
        except ExportRefused as exc:
            for line in exc.report.lines():
                say(line)
            fail(str(exc), code=1)
            return
        for line in report.lines():
            say(line)
        console.print(f"[green]wrote[/] {', '.join(report.files.values())} and {out / 'export_report.json'}",
                      soft_wrap=True)
