"""``sonoseg preprocess INPUT... --out DIR``: run the preprocessing chain on files and save what the
model will see (PNG), the grid transform (JSON) and a before/after figure per input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from sonoseg.cli._common import console, error_line, fail, handle_errors, track
from sonoseg.errors import SonosegError


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".dcm", ".dicom"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem or name


def _unique(stem: str, used: set[str]) -> str:
    out, k = stem, 1
    while out in used:
        k += 1
        out = f"{stem}_{k}"
    used.add(out)
    return out


def _write_outputs(frame: np.ndarray, pre, out_dir: Path, name: str, figure: bool) -> None:
    import cv2

    from sonoseg.preprocess.figure import before_after_figure, display_uint8

    grid = display_uint8(pre.image)
    if grid.ndim == 3:
        grid = cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(out_dir / f"{name}.png"), grid):
        raise OSError(f"could not write {out_dir / (name + '.png')}")
    (out_dir / f"{name}.json").write_text(json.dumps({"transform": pre.transform.to_dict()}, indent=1))
    if figure:
        before_after_figure(frame, pre, out_dir / f"{name}_before_after.png", title=name)


def register(app: typer.Typer) -> None:
    @app.command("preprocess")
    @handle_errors
    def preprocess(
        inputs: list[Path] = typer.Argument(..., help="Files or folders (DICOM, NIfTI, PNG/JPEG/TIFF/BMP)."),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder (created)."),
        config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config; its 'preprocess' section is used."),
        set_: list[str] = typer.Option([], "--set", help="Override, e.g. --set preprocess.size=[256,256] (repeatable)."),
        all_frames: bool = typer.Option(False, "--all-frames", help="Every frame of a cine / slice of a volume, not just the first."),
        figure: bool = typer.Option(True, "--figure/--no-figure", help="Also save a side-by-side before/after PNG."),
    ) -> None:
        """Preprocess images exactly as training/inference will, and save them for a visual check."""
        from sonoseg.config import load_config
        from sonoseg.io import find_inputs, iter_frames, read_meta
        from sonoseg.preprocess import preprocess_image

        cfg = load_config(config, set_).preprocess
        failures: list[str] = []
        files: list[Path] = []
        for item in inputs:
            try:
                files.extend(p for p in find_inputs([item]) if p not in files)
            except SonosegError as exc:
                failures.append(str(exc))
                error_line(str(exc))
        unreadable_inputs = len(failures)
        out.mkdir(parents=True, exist_ok=True)
        used: set[str] = set()
        done = frames_written = 0
        for path in track(files, "preprocessing"):
            try:
                meta = read_meta(path)
                stem = _unique(_stem(path), used)
                wrote = 0
                for k, frame in enumerate(iter_frames(path)):
                    pre = preprocess_image(frame, cfg, meta)
                    name = f"{stem}_f{k:03d}" if all_frames else stem
                    _write_outputs(frame, pre, out, name, figure)
                    wrote += 1
                    if not all_frames:
                        break
                if wrote == 0:
                    raise SonosegError(f"{path}: no frames")
            except (SonosegError, ValueError, OSError) as exc:
                msg = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
                failures.append(msg)
                error_line(msg)
                continue
            done += 1
            frames_written += wrote
        total = len(files) + unreadable_inputs
        console.print(
            f"preprocessed {done} of {total} input(s) -> {out} ({frames_written} image(s)); {len(failures)} skipped"
        )
        if done == 0:
            fail("no input could be preprocessed", code=1)
