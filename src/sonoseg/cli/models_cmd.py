"""``sonoseg models``: shipped trained models (inputs, metrics) and registered architectures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

import typer

from sonoseg.cli._common import console, handle_errors


def _fmt(x, nd=3):
    return "-" if x is None else f"{x:.{nd}f}"


def _input(d: dict) -> str:
    i = d["input"]
    if d.get("kind") == "volume3d":
        sp = "x".join(f"{v:g}" for v in i.get("spacing_mm") or []) or "own grid"
        return f"3D volume x{i['channels']}, {sp} mm, window {i.get('window') or 'custom'}"
    grid = "x".join(str(v) for v in i["grid"] or [])
    return f"{grid} x{i['channels']}, roi {i['roi']}"


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
            name = d["name"]
            if d.get("names"):
                name += f" (--model {' or '.join(d['names'])}" + (
                    f"; default of {', '.join(d['default_for'])})" if d.get("default_for") else ")")
            ci = d["test_dice_ci95"]
            test = _fmt(d["test_dice"]) + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
            name += f"\n{d['version']}" if d.get("version") else ""
            val = _fmt(d["val_dice"]) + (" (on its training data)" if (d.get("validation") or {}).get(
                "validated_on_training_data") else "")
            t.add_row(name, f"{d['arch']} / {d['encoder'] or '-'}", _input(d), str(d["classes"]),
                      ", ".join(d["image_classes"]) or "-", val, test, _fmt(d["test_balanced_accuracy"]),
                      "yes" if d["domain_check"] else "no")
        console.print(t)
        for d in info["shipped"] + info["files"]:
            v = d.get("validation")
            if v is None:
                console.print(f"{d['name']}: validated on: not recorded (no {d['name']}.validation.json)", soft_wrap=True)
                continue
            console.print(f"[bold]{d['name']}[/]: validated on: {v.get('validated_on')}", soft_wrap=True, highlight=False)
            console.print(f"  independent test: {v.get('independent_test') or 'none'}", soft_wrap=True, highlight=False)
            if v.get("note"):
                console.print(f"  note: {v['note']}", soft_wrap=True, highlight=False)
        a = Table(title="architectures (use with train --arch)")
        for c in ("arch", "default encoder"):
            a.add_column(c)
        for d in info["architectures"]:
            a.add_row(d["arch"], d["default_encoder"] or "-")
        console.print(a)
        dirs = sorted({str(Path(d["file"]).parent) for d in info["shipped"]})
        console.print(f"shipped models live in {' and '.join(dirs)}" if dirs else "", soft_wrap=True)
