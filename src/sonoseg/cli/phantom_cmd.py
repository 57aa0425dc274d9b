"""``sonoseg phantom OUT``: write a synthetic ultrasound dataset (images, masks, labels.csv)."""

from __future__ import annotations

from pathlib import Path

import typer

from sonoseg.cli._common import console, fail, handle_errors


def parse_size(text: str) -> tuple[int, int]:
    """"128" -> (128, 128); "96x128" -> (96, 128) as rows x cols."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        vals = [int(p) for p in parts if p.strip()]
    except ValueError:
        raise typer.BadParameter(f"size must look like 128 or 96x128, got {text!r}") from None
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or min(vals) < 32:
        raise typer.BadParameter(f"size must be one or two integers >= 32, got {text!r}")
    return vals[0], vals[1]


def register(app: typer.Typer) -> None:
    @app.command("phantom")
    @handle_errors
    def phantom(
        out: Path = typer.Argument(..., help="Output folder (created)."),
        n: int = typer.Option(20, "--n", "-n", min=1, help="Number of images (two per synthetic patient)."),
        size: str = typer.Option("128", "--size", help="Image size: 128 or ROWSxCOLS."),
        seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same dataset)."),
        lesions: int = typer.Option(1, "--lesions", min=0, help="Lesions per image."),
        sector: bool = typer.Option(False, "--sector/--linear", help="Convex-probe sector instead of a rectangle."),
        ui: bool = typer.Option(False, "--ui", help="Draw fake scanner UI (text, bars) outside the image."),
        dicom: bool = typer.Option(False, "--dicom", help="Write images as US DICOM (masks stay PNG)."),
    ) -> None:
        """Write a synthetic ultrasound phantom dataset with known lesion masks."""
        from sonoseg.data.phantom import write_phantom_dataset

        rows_cols = parse_size(size)
        if out.exists() and not out.is_dir():
            fail(f"{out}: exists and is not a folder", code=2)
        root = write_phantom_dataset(out, n=n, size=rows_cols, seed=seed, dicom=dicom, sector=sector, ui_overlay=ui, n_lesions=lesions)
        console.print(f"wrote {n} phantom images to {root} (images/, masks/, labels.csv)")
