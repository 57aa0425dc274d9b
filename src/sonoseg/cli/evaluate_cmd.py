"""``sonoseg evaluate``: score a model on one split of a dataset; metrics.json + per_image.csv + report."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from sonoseg.cli._common import THREADS_OPTION

from sonoseg.cli._common import console, handle_errors, parse_tta


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    @handle_errors
    def evaluate_cmd(
        dataset: Path = typer.Argument(..., help="Dataset folder with images/ and masks/."),
        split_file: Optional[Path] = typer.Option(None, "--split-file", help="CSV from `sonoseg split`; default: all images."),
        split: str = typer.Option("test", help="Which split of the split file to score."),
        model: Optional[Path] = typer.Option(None, "--model", "-m", help="Checkpoint (.pt) or .onnx; default: shipped model."),
        out: Path = typer.Option(Path("eval"), "--out", "-o", help="Output folder."),
        backend: str = typer.Option("auto", help="auto (fastest backend that is exact on this CPU) | torch | onnx | "
                                    "onnx-int8"),
        threads: Optional[int] = THREADS_OPTION,
        keep_largest: Optional[bool] = typer.Option(None, "--keep-largest/--no-keep-largest", help="Keep only the largest connected component (default: the model's setting)"),
        min_size: Optional[int] = typer.Option(None, help="Remove components smaller than this many pixels (default: the model's setting)"),
        fill_holes: Optional[bool] = typer.Option(None, "--fill-holes/--no-fill-holes", help="Fill holes in predicted masks (default: the model's setting)"),
        tta: List[str] = typer.Option([], help="Test-time flips h and/or v, or none (default: the model's setting)."),
        n_boot: int = typer.Option(1000, help="Bootstrap resamples for the 95% CIs."),
        units: str = typer.Option("auto", help="HD95/ASSD units: auto (mm if every image has spacing), mm, px."),
        progress_bars: bool = typer.Option(True, "--progress/--no-progress"),
    ) -> None:
        """Evaluate a model: Dice, IoU, precision, recall, specificity, accuracy, HD95, ASSD (mm when known)."""
        from rich.table import Table

        from sonoseg.evaluate.run import evaluate_model

        result = evaluate_model(dataset, split_file, split, model, out, backend, threads, keep_largest, min_size,
                                fill_holes, parse_tta(tta), n_boot, units, log=lambda m: console.print(m, highlight=False),
                                show_progress=progress_bars)
        table = Table(title=f"{split} split: {len(result.per_image)} images")
        for col in ("metric", "mean", "std", "95% CI", "n"):
            table.add_column(col, justify="right" if col != "metric" else "left")
        for key in ("dice", "iou", "precision", "recall", "specificity", "accuracy", "hd95", "assd"):
            a = result.aggregate.get(key)
            if not a:
                continue
            table.add_row(key, f"{a['mean']:.4f}", f"{a['std']:.4f}", f"[{a['ci95'][0]:.4f}, {a['ci95'][1]:.4f}]", str(a["n"]))
        console.print(table)
        console.print(f"[green]wrote[/] {out / 'metrics.json'}, {out / 'per_image.csv'}, {out / 'report.html'}")
