"""Many inputs at once: bad files are skipped and reported, never fatal on their own."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Iterator

from sonoseg.errors import InputError
from sonoseg.io.detect import detect_format, find_inputs
from sonoseg.io.load import load_image, read_meta
from sonoseg.io.types import LoadedImage

log = logging.getLogger(__name__)

ROW_KEYS = (
    "path", "ok", "error", "format", "modality", "rows", "columns", "frames", "samples_per_pixel",
    "photometric", "transfer_syntax", "transfer_syntax_name", "bits_stored", "pixel_spacing_mm",
    "spacing_source", "us_regions",
)


def _row(path: Path) -> dict:
    row = dict.fromkeys(ROW_KEYS)
    row.update(path=str(path), ok=False)
    try:
        row["format"] = detect_format(path)
        meta = read_meta(path)
    except InputError as exc:
        row["error"] = exc.reason
        return row
    except Exception as exc:  # noqa: BLE001 - inspect must report, not crash, on odd files
        row["error"] = f"unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return row
    row.update(
        ok=True,
        modality=meta.modality,
        rows=meta.rows,
        columns=meta.columns,
        frames=meta.frames,
        samples_per_pixel=meta.samples_per_pixel,
        photometric=meta.photometric,
        transfer_syntax=meta.transfer_syntax,
        transfer_syntax_name=meta.transfer_syntax_name,
        bits_stored=meta.bits_stored,
        pixel_spacing_mm=list(meta.pixel_spacing_mm) if meta.pixel_spacing_mm else None,
        spacing_source=meta.spacing_source,
        us_regions=len(meta.us_regions),
    )
    return row


def _expand(paths, recursive: bool, failures: list[InputError]) -> list[Path]:
    """find_inputs per argument, so one missing path or empty folder is reported, not fatal."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    found: dict[Path, None] = {}
    for p in paths:
        try:
            found.update(dict.fromkeys(find_inputs([p], recursive=recursive)))
        except InputError as exc:
            failures.append(exc)
    return list(found)


def inspect_paths(paths: Iterable[str | Path] | str | Path, recursive: bool = True) -> list[dict]:
    """One JSON-ready dict per input file (header only): ok/error plus the ROW_KEYS fields.
    A path that does not exist, or a folder with no inputs, gives one failed row of its own."""
    missing: list[InputError] = []
    rows = [_row(p) for p in _expand(paths, recursive, missing)]
    for exc in missing:
        row = dict.fromkeys(ROW_KEYS)
        row.update(path=exc.path, ok=False, error=exc.reason)
        rows.append(row)
    return rows


def iter_images(
    paths: Iterable[str | Path] | str | Path,
    recursive: bool = True,
    failures: list[InputError] | None = None,
    voi: bool = True,
) -> Iterator[LoadedImage]:
    """Load every input under ``paths``; unreadable ones are logged and appended to ``failures``."""
    missing: list[InputError] = []
    files = _expand(paths, recursive, missing)
    for exc in missing:
        log.warning("skipping %s", exc)
    if failures is not None:
        failures.extend(missing)
    for p in files:
        try:
            yield load_image(p, voi=voi)
        except InputError as exc:
            log.warning("skipping %s", exc)
            if failures is not None:
                failures.append(exc)
