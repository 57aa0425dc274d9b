"""Expand what the user named into files to process, and list everything else with a reason.

Every named input appears in ``results.json``: a missing path, a broken link, an empty folder (even
one named ``x.dcm``), a zero-byte file or a folder without any DICOM/NIfTI/image files is reported as
failed rather than silently dropped. Zero-byte files found inside folders are reported too.
"""

from __future__ import annotations

from pathlib import Path

from sonoseg.errors import InputError
from sonoseg.io.detect import DICOM_EXTS, IMAGE_EXTS


def _looks_like_input(p: Path) -> bool:
    name = p.name.lower()
    return p.suffix.lower() in DICOM_EXTS | IMAGE_EXTS or name.endswith((".nii", ".nii.gz")) or p.suffix == ""


def expand_inputs(inputs) -> tuple[list[Path], list[tuple[str, str]]]:
    """(files to process, in order and de-duplicated; [(named path, reason)] for what cannot be)."""
    from sonoseg.io import find_inputs

    files: dict[Path, None] = {}
    seen: set[Path] = set()
    failed: list[tuple[str, str]] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_symlink() and not p.exists():
            failed.append((str(p), f"{p}: broken link (its target does not exist)"))
            continue
        if not p.exists():
            failed.append((str(p), f"{p}: no such file or folder"))
            continue
        if p.is_file():
            try:
                size = p.stat().st_size
            except OSError as exc:
                failed.append((str(p), f"{p}: cannot read ({exc.strerror or 'error'})"))
                continue
            if size == 0:
                failed.append((str(p), f"{p}: empty file (0 bytes)"))
                continue
            if p.resolve() not in seen:
                seen.add(p.resolve())
                files[p] = None
            continue
        if p.is_dir() and not any(True for _ in p.iterdir()):
            failed.append((str(p), f"{p}: empty folder"))
            continue
        try:
            found = find_inputs([p])
        except InputError:
            found = []
        except OSError as exc:
            failed.append((str(p), f"{p}: cannot read folder ({exc.strerror or 'error'})"))
            continue
        empty_files = [c for c in sorted(p.rglob("*")) if c.is_file() and not c.name.startswith(".")
                       and _looks_like_input(c) and c.stat().st_size == 0]
        for c in empty_files:
            failed.append((str(c), f"{c}: empty file (0 bytes)"))
        found = [f for f in found if f not in set(empty_files)]
        if not found and not empty_files:
            failed.append((str(p), f"{p}: no DICOM, NIfTI or image files in this folder"))
        for f in found:
            if f.resolve() not in seen:
                seen.add(f.resolve())
                files[f] = None
    return list(files), failed
