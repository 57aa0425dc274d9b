"""``sonoseg evaluate``: score a model on one split of a dataset; metrics.json + per_image.csv + report."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from sonoseg.cli._common import TENTATIVE_OPTION, THREADS_OPTION, console, frame_progress, handle_errors, parse_tta, per_dataset, say, show_result
from sonoseg.cli.measure_cmd import CONTOUR_HELP, SPACING_HELP


def class_table(cm: dict):
    """Headline class metrics with their bootstrap CIs."""
    from rich.table import Table

    t = Table(title=f"class head: {cm['n']} images ({', '.join(cm['names'])})")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_column("95% CI", justify="right")
    for key, v in cm["metrics"].items():
        if v["value"] is None:
            continue
        lo, hi = v["ci95"]
        ci = f"[{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else "-"
        t.add_row(key, f"{v['value']:.3f}", ci)
    return t


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    @handle_errors
    def evaluate_cmd(
        datasets: List[Path] = typer.Argument(..., help="Dataset folder with images/ and masks/; several folders are "
                                              "each evaluated on their own (OUT/<folder name>/) and summarised side by "
                                              "side in OUT/per_source.md."),
        split_files: List[Path] = typer.Option([], "--split-file", help="CSV from `sonoseg split`; default: all images. "
                                               "With several datasets one per dataset, in the same order."),
        split: Optional[str] = typer.Option(None, help="Which split of the split file to score (default: test)."),
        model: Optional[Path] = typer.Option(None, "--model", "-m", help="Trained model: checkpoint (.pt) or .onnx, or fast | accurate | v3; default: fast."),
        cv: Optional[Path] = typer.Option(None, "--cv", help="A `sonoseg train --folds` run: score each fold's best.pt "
                                          "on its own val images and pool them per source (out of fold; no --model, "
                                          "--split-file or --split)."),
        config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config: its measure/postprocess sections (for --measurements)."),
        spacing: Optional[str] = typer.Option(None, "--spacing", help=SPACING_HELP),
        measurements: bool = typer.Option(False, "--measurements", help="Also report measurement error vs the ground truth (Bland-Altman)."),
        contour: Optional[str] = typer.Option(None, "--contour", help=CONTOUR_HELP),
        biometry: Optional[bool] = typer.Option(None, "--biometry/--no-biometry", help="Include HC/BPD/OFD in --measurements."),
        reference: List[str] = typer.Option([], "--reference-column", help="Compare the measurements with this "
                                            "labels.csv column, e.g. head_circumference_mm (quantity from its name, or "
                                            "COL:hc|bpd|ofd|area|max_diameter); implies --measurements. Repeatable."),
        out: Path = typer.Option(Path("eval"), "--out", "-o", help="Output folder."),
        backend: str = typer.Option("auto", help="auto (fastest backend that is exact on this CPU) | torch | onnx | "
                                    "onnx-int8"),
        threads: Optional[int] = THREADS_OPTION,
        keep_largest: Optional[bool] = typer.Option(None, "--keep-largest/--no-keep-largest", help="Keep only the largest connected component (default: the model's setting)"),
        min_size: Optional[int] = typer.Option(None, help="Remove components smaller than this many pixels (default: the model's setting)"),
        fill_holes: Optional[bool] = typer.Option(None, "--fill-holes/--no-fill-holes", help="Fill holes in predicted masks (default: the model's setting)"),
        tentative_outline: Optional[bool] = TENTATIVE_OPTION,
        tta: List[str] = typer.Option([], help="Test-time flips h and/or v, or none (default: the model's setting)."),
        n_boot: int = typer.Option(1000, help="Bootstrap resamples for the 95% CIs."),
        units: str = typer.Option("auto", help="HD95/ASSD units: auto (mm if every image has spacing), mm, px."),
        progress_bars: bool = typer.Option(True, "--progress/--no-progress"),
    ) -> None:
        """Evaluate a model: Dice, IoU, precision, recall, specificity, accuracy, HD95, ASSD (mm when known)."""
        from dataclasses import replace

        from sonoseg.evaluate.options import EvaluateOptions
        from sonoseg.evaluate.run import evaluate_model
        from sonoseg.infer.volume import is_3d_model

        pairs = list(zip(datasets, per_dataset(split_files, datasets, "--split-file")))
        if cv is not None and (model is not None or split_files or split is not None):
            from sonoseg.errors import ConfigError

            raise ConfigError("--cv scores the run's own fold models on their own val images: "
                              "drop --model, --split-file and --split")
        split = split or "test"
        opts = EvaluateOptions(model=model, split=split, out_dir=out, backend=backend, threads=threads,
                               keep_largest=keep_largest, min_size=min_size, fill_holes=fill_holes,
                               tentative_outline=tentative_outline, tta=parse_tta(tta),
                               n_boot=n_boot, distance_units=units, spacing=spacing, measurements=measurements,
                               config=config, contour=contour, biometry=biometry, reference=tuple(reference))
        if cv is not None:
            from rich.markdown import Markdown

            from sonoseg.evaluate.out_of_fold import evaluate_out_of_fold

            evaluate_out_of_fold(cv, datasets, opts, log=say)
            show_result(Markdown((out / "per_source.md").read_text()))
            console.print(f"[green]wrote[/] {out / 'per_source.md'}, {out / 'per_source.json'}")
            return
        if is_3d_model(model):
            from sonoseg.cli.volume_cmds import run_evaluate_3d

            for dataset, split_file in pairs:
                run_evaluate_3d(dataset, model, out / dataset.name if len(pairs) > 1 else out, split_file, split,
                                threads, n_boot, keep_largest)
            return
        summaries = {}
        for dataset, split_file in pairs:
            where = out / dataset.name if len(pairs) > 1 else out
            if len(pairs) > 1:
                console.rule(f"{dataset.name}: {split} split", characters="-")
            with frame_progress(progress_bars) as cb:
                result = evaluate_model(dataset, replace(opts, split_file=split_file, out_dir=where), log=say, progress=cb)
            _print_result(result, split, where)
            if len(pairs) > 1:
                from sonoseg.evaluate.per_source import source_summary

                summaries[dataset.name] = source_summary(result)
        if summaries:
            from sonoseg.evaluate.per_source import write_per_source

            from rich.markdown import Markdown

            show_result(Markdown(write_per_source(summaries, out, f"{split} split per source" if split_files
                                                  else "all images per source")))
            console.print(f"[green]wrote[/] {out / 'per_source.md'}, {out / 'per_source.json'}")


def _print_result(result, split: str, out: Path) -> None:
    """The console summary of one evaluation."""
    from rich.table import Table

    table = Table(title=f"{split} split: {len(result.per_image)} images")
    for col in ("metric", "mean", "std", "95% CI", "n"):
        table.add_column(col, justify="right" if col != "metric" else "left")
    for key in ("dice", "iou", "precision", "recall", "specificity", "accuracy", "hd95", "assd"):
        a = result.aggregate.get(key)
        if not a:
            continue
        table.add_row(key, f"{a['mean']:.4f}", f"{a['std']:.4f}", f"[{a['ci95'][0]:.4f}, {a['ci95'][1]:.4f}]", str(a["n"]))
    show_result(table)
    if result.detection:
        from sonoseg.evaluate.detection import detection_line

        show_result(detection_line(result.detection))
    if result.measurement_agreement:
        from sonoseg.evaluate.report import AGREEMENT_HEAD, AGREEMENT_HEADER, agreement_rows

        mt = Table(title=AGREEMENT_HEAD)
        for col in AGREEMENT_HEADER:
            mt.add_column(col, justify="right" if col != "Quantity" else "left")
        for row in agreement_rows(result.measurement_agreement):
            mt.add_row(*row)
        show_result(mt)
        console.print(f"[green]wrote[/] {out / 'measurement_agreement.json'}, {out / 'bland_altman.png'}")
    if result.class_metrics:
        show_result(class_table(result.class_metrics))
    console.print(f"[green]wrote[/] {out / 'metrics.json'}, {out / 'per_image.csv'}, {out / 'report.html'}"
                  + (f", {out / 'class_metrics.json'}" if result.class_metrics else ""))
