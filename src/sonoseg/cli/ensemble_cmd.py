"""``sonoseg ensemble CKPT CKPT ... --out FILE``: several trained models as one checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from sonoseg.cli._common import console, fail, handle_errors


def register(app: typer.Typer) -> None:
    @app.command("ensemble")
    @handle_errors
    def ensemble(
        checkpoints: List[Path] = typer.Argument(..., help="Two or more checkpoints with the same preprocessing."),
        out: Path = typer.Option(..., "--out", "-o", help="Ensemble checkpoint to write (.pt)."),
        half: bool = typer.Option(False, "--half", help="Store fp16 weights (half the file size)."),
        force: bool = typer.Option(False, "--force", help="Overwrite an existing --out file."),
    ) -> None:
        """Combine checkpoints into one model that averages their probabilities (nnU-Net style)."""
        from sonoseg.models import count_parameters
        from sonoseg.models.checkpoint import load_model
        from sonoseg.train.ensemble import ensemble_checkpoints

        if out.exists() and not force:
            fail(f"{out}: exists (use --force to overwrite)", code=2)
        dst = ensemble_checkpoints(checkpoints, out, half=half)
        model, cfg = load_model(dst)
        n = len(cfg.model.params["members"])
        console.print(f"wrote {dst}: {n} members, {count_parameters(model) / 1e6:.2f} M parameters, "
                      f"{dst.stat().st_size / 1e6:.1f} MB; preprocessing and postprocessing of {checkpoints[0].name}")
