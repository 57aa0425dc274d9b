"""``sonoseg validate DATASET``: list every dataset problem; exit 1 when there are errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from sonoseg.cli._common import console, handle_errors, progress
from sonoseg.data.validate import validate_dataset


def _short_path(path: str, root: Path) -> str:
    """Paths inside the dataset are shown relative to it (the table stays readable)."""
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return path


def register(app: typer.Typer) -> None:
    @app.command("validate")
    @handle_errors
    def validate(
        dataset: Path = typer.Argument(..., help="dataset folder with images/, masks/ and optional labels.csv"),
        classes: int = typer.Option(1, "--classes", "-k", help="1 = binary masks (0/255 or 0/1); K > 1 = label maps 0..K-1"),
        limit: int = typer.Option(50, "--limit", help="show at most this many problems (0 = all)"),
        json_out: Optional[Path] = typer.Option(None, "--json", help="also write the full report as JSON"),
        names_only: bool = typer.Option(False, "--names-only", help="check file names only, do not decode pixels"),
    ) -> None:
        """Check masks against images: missing/extra, unreadable, size mismatch, non-binary or out-of-range labels.

        Volume datasets (NIfTI volumes / DICOM series folders): masks must lie on the image grid
        (shape, spacing, affine); label ids are named by labels.json or labels.csv."""
        from sonoseg.data.volumes import is_volume_dataset, validate_volumes

        with progress() as p:
            task = p.add_task("validating", total=None)
            on_progress = lambda k, n: p.update(task, completed=k, total=n)  # noqa: E731
            if is_volume_dataset(dataset):
                report = validate_volumes(dataset, on_progress=on_progress)
            else:
                report = validate_dataset(dataset, classes=classes, check_pixels=not names_only, on_progress=on_progress)
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(report.to_dict(), indent=1))

        if report.problems:
            shown = report.problems if limit <= 0 else report.problems[:limit]
            t = Table(title=f"problems in {escape(str(dataset))} (paths relative to it)")
            t.add_column("severity")
            t.add_column("kind")
            t.add_column("file", overflow="fold")
            t.add_column("problem", overflow="fold")
            for pr in shown:
                colour = "red" if pr.severity == "error" else "yellow"
                t.add_row(f"[{colour}]{pr.severity}[/]", pr.kind, escape(_short_path(pr.path, dataset)), escape(pr.message))
            console.print(t)
            if len(shown) < len(report.problems):
                console.print(f"... and {len(report.problems) - len(shown)} more (use --limit 0 or --json)")
            kinds = ", ".join(f"{k}: {n}" for k, n in sorted(report.by_kind().items()))
            console.print(f"by kind: {kinds}")
        colour = "green" if report.ok else "red"
        console.print(f"[bold {colour}]{escape(report.summary())}[/]")
        if not report.ok:
            raise typer.Exit(1)
