"""``sonoseg measure``: measurements of existing masks (the same code path and JSON as predict)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from sonoseg.cli._common import console, error_line, frame_progress, handle_errors

SPACING_HELP = ("Pixel spacing ROW_MM[,COL_MM] for every input; overrides the spacing table (--spacing-file, or "
                "the dataset's labels.csv) and the file's own (DICOM, NIfTI, PNG pHYs). The source used is "
                "recorded in every output.")
SPACING_FILE_HELP = ("CSV of per-image spacing (an image column and a spacing column, as in labels.csv); default: "
                     "a labels.csv beside the inputs (or beside their images/ or masks/ folder).")
CONTOUR_HELP = "Boundary convention: edge (outer pixel edge) | centre (pixel-centre boundary); default: config/model."


def measurement_table(payload: dict, title: str):
    """Rich table of per-input summaries (shared by measure and predict)."""
    from rich.table import Table

    rows = [r for r in payload["results"] if r["ok"]]
    bio = any((r.get("summary") or {}).get("biometry") for r in rows)
    table = Table(title=title)
    cols = ["input", "frames", "largest area", "max diameter", "spacing from"] + (["HC", "BPD", "OFD"] if bio else [])
    for c in cols:
        table.add_column(c, justify="left" if c in ("input", "spacing from") else "right")
    for r in rows:
        s = r["summary"]
        u = s.get("unit", "px")
        cells = [Path(r["input"]).name, str(r["frames"]), f"{s.get('max_area', 0):.1f} {u}²",
                 f"{s.get('max_diameter', 0):.1f} {u}", s.get("spacing_source") or "none (px)"]
        if bio:
            b = s.get("biometry") or {}
            cells += [f"{b[k]:.1f} {u}" if b.get(k) is not None else "-" for k in ("hc", "bpd", "ofd")]
        table.add_row(*cells)
    return table


def register(app: typer.Typer) -> None:
    @app.command("measure")
    @handle_errors
    def measure_cmd(
        masks: List[Path] = typer.Argument(..., help="Mask files or folders: PNG/TIFF (0/1, 0/255 or labels), NIfTI."),
        out: Path = typer.Option(Path("measurements"), "--out", "-o", help="Output folder."),
        spacing: Optional[str] = typer.Option(None, "--spacing", help=SPACING_HELP),
        spacing_file: Optional[Path] = typer.Option(None, "--spacing-file", help=SPACING_FILE_HELP),
        config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config: its measure/postprocess sections."),
        contour: Optional[str] = typer.Option(None, "--contour", help=CONTOUR_HELP),
        biometry: Optional[bool] = typer.Option(None, "--biometry/--no-biometry", help="HC/BPD/OFD of the largest structure."),
        ellipse_fit: Optional[bool] = typer.Option(None, "--ellipse-fit/--no-ellipse-fit", help="Replace each structure by its fitted ellipse first."),
        strict: bool = typer.Option(False, help="Exit non-zero if any mask failed."),
        progress_bars: bool = typer.Option(True, "--progress/--no-progress"),
    ) -> None:
        """Measure existing masks (e.g. manual annotations): area, diameters, ellipse, biometry; JSON per mask."""
        from sonoseg.infer.measure_files import measure_masks

        with frame_progress(progress_bars) as cb:
            payload = measure_masks(list(masks), out, spacing=spacing, config=config, contour=contour,
                                    biometry=biometry, ellipse_fit=ellipse_fit, progress=cb, spacing_file=spacing_file)
        console.print(measurement_table(payload, f"sonoseg measure -> {out}"))
        for r in payload["results"]:
            if not r["ok"]:
                error_line(r["error"])
        console.print(f"{payload['n_ok']} ok, {payload['n_failed']} failed; results in {out / 'results.json'}")
        if payload["n_ok"] == 0 or (strict and payload["n_failed"]):
            raise typer.Exit(1)
