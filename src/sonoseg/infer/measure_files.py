"""``measure_masks``: measurements of existing mask files (a user's manual annotations), through the
same frame code path as ``predict`` (:mod:`sonoseg.infer.frames`), so both write the same JSON.

Masks: PNG/TIFF/BMP (0/1, 0/255 or label values; PNG pHYs gives the spacing), NIfTI 2-D, 3-D
(slices along z) or the 4-D cine layout ``predict`` writes (x, y, 1, t; frame time from pixdim[4]).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from sonoseg.errors import InputError, SonosegError


def _binary_255(a: np.ndarray) -> np.ndarray:
    """0/255 viewable masks are binary masks: 255 -> label 1. Other values are labels as stored."""
    vals = np.unique(a)
    if vals.size and set(vals.tolist()) <= {0, 255}:
        return (a > 0).astype(np.uint8)
    return a


def read_mask_frames(path: Path) -> tuple[str, Iterator[np.ndarray], int, Optional[tuple], Optional[str], Optional[float]]:
    """(kind, frames iterator [row, col], n_frames, spacing, spacing source, frame_time_ms)."""
    from sonoseg.data.layout import to_label_map
    from sonoseg.io import detect_format, load_image

    fmt = detect_format(path)
    if fmt == "nifti":
        import nibabel as nib

        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
        zooms = img.header.get_zooms()
        spacing = (float(zooms[1]), float(zooms[0])) if len(zooms) >= 2 else None
        if data.ndim == 4 and data.shape[2] == 1:
            space_u, time_u = img.header.get_xyzt_units()
            ft = float(zooms[3]) * {"sec": 1000.0, "msec": 1.0, "usec": 0.001}.get(time_u, 0.0) or None
            stack, kind = data[:, :, 0, :], "cine"
        elif data.ndim in (2, 3):
            stack, kind, ft = (data[..., None] if data.ndim == 2 else data), "volume", None
            kind = "image" if stack.shape[2] == 1 else kind
        else:
            raise InputError(path, f"mask NIfTI must be 2-D, 3-D or x*y*1*t, got shape {data.shape}")
        frames = (np.asarray(stack[:, :, k]).T for k in range(stack.shape[2]))
        return kind, (_check_labels(f, path) for f in frames), stack.shape[2], spacing, "NIfTI pixdim", ft
    loaded = load_image(path)
    mask = to_label_map(loaded.pixels, path, None, loaded.meta.format)
    return "image", iter([_check_labels(_binary_255(mask), path)]), 1, loaded.meta.pixel_spacing_mm, \
        loaded.meta.spacing_source, None


def _check_labels(a: np.ndarray, path: Path) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.array_equal(a, np.round(a)):
            raise InputError(path, "mask has non-integer values (a probability map? threshold it first)")
        a = a.astype(np.int64)
    if a.size and a.min() < 0:
        raise InputError(path, "mask has negative values")
    return a.astype(np.uint8) if a.size and a.max() <= 255 else a


def _table_row(table, path: Path) -> tuple:
    spacing, source = table.lookup(path)
    return (spacing, source) if source else (None,)


def measure_masks(masks: list[str | Path], out_dir: str | Path, spacing=None, config=None,
                  contour: Optional[str] = None, biometry: Optional[bool] = None,
                  ellipse_fit: Optional[bool] = None, progress: Optional[Callable[[str, int, int], None]] = None,
                  spacing_file=None) -> dict:
    """Measure every mask; writes ``<stem>.measurements.json``, ``<stem>.overlay.png`` and ``results.json``.
    Spacing per mask: ``spacing``, else ``spacing_file`` / a dataset's labels.csv (data.spacing_table), else its own."""
    from sonoseg.config import SonosegConfig, load_config
    from sonoseg.infer.frames import (MeasureOptions, chosen_reason, frame_area, measure_frame, overlay_caption, payload,
                                      summary)
    from sonoseg.infer.outputs import unique_stem, write_json, write_overlay
    from sonoseg.io import find_inputs
    from sonoseg.io.spacing import parse_spacing, resolve_spacing
    from sonoseg.data.spacing_table import SpacingTable

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config if isinstance(config, SonosegConfig) else load_config(config) if config is not None else SonosegConfig()
    sp = parse_spacing(spacing) if spacing is not None else None
    table = SpacingTable(spacing_file)
    results, taken, files = [], set(), []
    for p in masks:
        try:
            files.extend(find_inputs([p]))
        except InputError as exc:
            results.append({"input": str(p), "ok": False, "error": str(exc)})
    for path in files:
        t0 = time.time()
        stem = unique_stem(out, path, taken)
        try:
            kind, frames, n, fsp, fsrc, ft = read_mask_frames(path)
            s, src = resolve_spacing(fsp, fsrc, sp, *_table_row(table, path))
            opts = MeasureOptions.from_config(cfg, s, src, ft, contour=contour, biometry=biometry, ellipse_fit=ellipse_fit)
            recs, best = [], (-1.0, 0, None)
            for i, m in enumerate(frames):
                m, rec = measure_frame(m, i, opts)
                recs.append(rec)
                if frame_area(rec) > best[0]:
                    best = (frame_area(rec), i, m)
                if progress is not None:
                    progress(path.name, i + 1, n)
            chosen = best[1]
            why = chosen_reason(recs[chosen], opts)
            mpath = write_json(payload(path.name, kind, recs, opts, chosen, chosen_frame_reason=why),
                               out / f"{stem}.measurements.json")
            view = (best[2] > 0).astype(np.uint8) * 60  # the mask itself, dimmed, as the overlay's background
            opath = write_overlay(view, best[2], out / f"{stem}.overlay.png",
                                  caption=overlay_caption(recs[chosen], opts, len(recs), why),
                                  biometry=recs[chosen].get("biometry"), spacing=opts.spacing)
            results.append({"input": str(path), "ok": True, "error": None, "kind": kind, "frames": len(recs),
                            "measurements": str(mpath), "overlay": str(opath), "summary": summary(recs, opts, chosen),
                            "seconds": round(time.time() - t0, 3)})
        except (SonosegError, ValueError) as exc:
            msg = str(exc) if isinstance(exc, InputError) else f"{path}: {exc}"
            results.append({"input": str(path), "ok": False, "error": msg.splitlines()[0]})
    out_payload = {"n_inputs": len(results), "n_ok": sum(r["ok"] for r in results),
                   "n_failed": sum(not r["ok"] for r in results), "spacing_override_mm": list(sp) if sp else None,
                   "results": results}
    write_json(out_payload, out / "results.json")
    return out_payload
