"""``sonoseg models``: shipped trained models (inputs, metrics) and registered architectures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

import typer

from sonoseg.cli._common import console, handle_errors


def _fmt(x, nd=3):
    return "-" if x is None else f"{x:.{nd}f}"


def register(app: typer.Typer) -> None:
    @app.command("models")
    @handle_errors
    def models_cmd(
        files: List[Path] = typer.Argument(None, help="Also describe these checkpoints (.pt)."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    ) -> None:
        """List the shipped models (and given checkpoints) with inputs and metrics, and the architectures."""
        from rich.table import Table

        from sonoseg.infer.model_info import list_all

        info = list_all(list(files or []))
        if as_json:
            typer.echo(json.dumps(info, indent=2))
            return
        t = Table(title="trained models (use with --model)")
        for c in ("model", "arch / encoder", "input", "mask classes", "image classes", "val Dice", "test Dice [95% CI]",
                  "test bal. acc.", "domain check"):
            t.add_column(c, justify="left" if c in ("model", "arch / encoder", "input", "image classes") else "right")
        for d in info["shipped"] + info["files"]:
            name = d["name"] + (" (default)" if d.get("default") else "")
            grid = "x".join(str(v) for v in d["input"]["grid"] or [])
            ci = d["test_dice_ci95"]
            test = _fmt(d["test_dice"]) + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
            name += f"\n{d['version']}" if d.get("version") else ""
            t.add_row(name, f"{d['arch']} / {d['encoder'] or '-'}", f"{grid} x{d['input']['channels']}, roi {d['input']['roi']}",
                      str(d["classes"]), ", ".join(d["image_classes"]) or "-", _fmt(d["val_dice"]), test,
                      _fmt(d["test_balanced_accuracy"]), "yes" if d["domain_check"] else "no")
        console.print(t)
        a = Table(title="architectures (use with train --arch)")
        for c in ("arch", "default encoder"):
            a.add_column(c)
        for d in info["architectures"]:
            a.add_row(d["arch"], d["default_encoder"] or "-")
        console.print(a)
        console.print(f"shipped models live in {Path(info['shipped'][0]['file']).parent}" if info["shipped"] else "")
