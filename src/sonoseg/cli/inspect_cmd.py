"""``sonoseg inspect``: one row per input file (header only), as a table or JSON."""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import List

import typer

from sonoseg.cli._common import console, err_console, handle_errors


_SYNTAX = {
    "1.2.840.10008.1.2": "Implicit LE",
    "1.2.840.10008.1.2.1": "Explicit LE",
    "1.2.840.10008.1.2.2": "Explicit BE",
    "1.2.840.10008.1.2.1.99": "Deflated LE",
    "1.2.840.10008.1.2.5": "RLE",
    "1.2.840.10008.1.2.4.50": "JPEG baseline",
    "1.2.840.10008.1.2.4.51": "JPEG extended",
    "1.2.840.10008.1.2.4.57": "JPEG lossless",
    "1.2.840.10008.1.2.4.70": "JPEG lossless SV1",
    "1.2.840.10008.1.2.4.80": "JPEG-LS lossless",
    "1.2.840.10008.1.2.4.81": "JPEG-LS near-lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 lossless",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
}
_SOURCE = {"SequenceOfUltrasoundRegions": "US regions", "ImagerPixelSpacing": "imager", "NIfTI header": "NIfTI"}


def _common_root(rows: list[dict]) -> Path | None:
    parents = [Path(r["path"]).parent for r in rows]
    if not parents:
        return None
    try:
        return Path(os.path.commonpath([str(p) for p in parents]))
    except ValueError:
        return None


def _table(rows: list[dict]):
    from rich.table import Table

    root = _common_root(rows)
    title = f"sonoseg inspect: {root}" if root and str(root) not in ("", ".") else "sonoseg inspect"
    table = Table(title=title, header_style="bold", expand=False)
    table.add_column("file", overflow="fold")
    table.add_column("modality")
    table.add_column("rows x cols", justify="right")
    table.add_column("frames", justify="right")
    table.add_column("photometric")
    table.add_column("syntax")
    table.add_column("spacing mm", justify="right")
    table.add_column("source / error", overflow="fold")
    for r in rows:
        name = str(Path(r["path"]).relative_to(root)) if root and str(root) not in ("", ".") else r["path"]
        if not r["ok"]:
            table.add_row(name, "", "", "", "", "", "", f"[red]{r['error']}[/]")
            continue
        sp = r.get("pixel_spacing_mm")
        syntax = _SYNTAX.get(r["transfer_syntax"] or "", r["transfer_syntax_name"] or r["format"])
        table.add_row(
            name,
            r["modality"] or "-",
            f"{r['rows']}x{r['columns']}",
            str(r["frames"]),
            (r["photometric"] or "-").replace("PALETTE COLOR", "PALETTE"),
            syntax,
            f"{sp[0]:.4g} x {sp[1]:.4g}" if sp else "-",
            _SOURCE.get(r["spacing_source"] or "", r["spacing_source"] or "-"),
        )
    return table


def register(app: typer.Typer) -> None:
    @app.command("inspect")
    @handle_errors
    def inspect_cmd(
        paths: List[Path] = typer.Argument(..., help="Files and/or folders (searched recursively)."),
        as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
        strict: bool = typer.Option(False, "--strict", help="Exit non-zero if any file failed."),
        recursive: bool = typer.Option(True, "--recursive/--no-recursive", help="Descend into sub-folders."),
    ) -> None:
        """Show modality, size, frames, photometric, transfer syntax and pixel spacing of each input.

        Unreadable files are listed with their reason; the exit code is non-zero only if nothing
        could be read (or with --strict, if anything failed).
        """
        from sonoseg.io import inspect_paths

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's VR warnings would drown the table
            rows = inspect_paths(paths, recursive=recursive)
        failed = [r for r in rows if not r["ok"]]
        if as_json:
            sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        else:
            console.print(_table(rows))
        if failed:
            err_console.print(f"[yellow]{len(failed)} of {len(rows)} file(s) could not be read:[/]")
            for r in failed:
                err_console.print(f"  {r['path']}: {r['error']}", markup=False, highlight=False, soft_wrap=True)
        else:
            err_console.print(f"{len(rows)} file(s) read", highlight=False)
        if len(failed) == len(rows) or (strict and failed):
            raise typer.Exit(1)
