"""``sonoseg demo``: the README's main job — the shipped model on the shipped sample DICOMs."""

from __future__ import annotations

from pathlib import Path

import typer

from sonoseg.cli._common import console, handle_errors


def register(app: typer.Typer) -> None:
    @app.command("demo")
    @handle_errors
    def demo_cmd(
        out: Path = typer.Option(Path("demo-output"), "--out", "-o", help="Output folder."),
    ) -> None:
        """Segment the shipped sample ultrasound DICOMs with the shipped fast model (predict's default)."""
        from sonoseg.cli.predict_cmd import run_predict
        from sonoseg.infer.options import PredictOptions

        run_predict([], out, PredictOptions())
        console.print(f"open {out}/*.overlay.png to see the segmentations")
