"""``predict_inputs``: files/folders -> per-input outputs + ``results.json``.

Per input: mask in the original geometry (PNG for a 2D image, NIfTI for cine/volumes), overlay PNG,
measurements JSON (mm when pixel spacing is known) and, for DICOM inputs, a DICOM SEG referencing the
source (one SEG frame per source frame). Bad inputs are reported and skipped; the rest are processed.
Cine is streamed in batches; only the 1-byte-per-pixel masks of all frames are kept (memory-mapped).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np

from sonoseg.errors import InputError, SonosegError


@dataclass
class InputResult:
    input: str
    ok: bool
    error: Optional[str] = None
    kind: Optional[str] = None  # image | cine | volume
    frames: int = 0
    mask: Optional[str] = None
    overlay: Optional[str] = None
    measurements: Optional[str] = None
    seg: Optional[str] = None
    seconds: float = 0.0
    summary: dict = field(default_factory=dict)


def _predict_dicom_or_image(predictor, path: Path, fmt: str, out: Path, stem: str, batch_size: int,
                            write_seg: bool) -> InputResult:
    from sonoseg.infer.measure import measure_mask
    from sonoseg.infer.outputs import write_json, write_mask_nifti, write_mask_png, write_overlay
    from sonoseg.io import iter_frames, read_meta

    meta = read_meta(path)
    spacing = meta.pixel_spacing_mm
    n = max(int(meta.frames or 1), 1)
    res = InputResult(str(path), ok=False, kind="cine" if n > 1 else "image", frames=n)
    tmp = None
    if n > 1:
        tmp = tempfile.NamedTemporaryFile(suffix=".npy", dir=out, delete=False)
        masks = np.lib.format.open_memmap(tmp.name, mode="w+", dtype=np.uint8, shape=(n, meta.rows, meta.columns))
    per_frame, best = [], (-1, None, None)
    i = 0
    try:
        for i, (frame, pred) in enumerate(_paired(iter_frames(path), predictor, meta, batch_size)):
            if i >= n:
                raise InputError(path, f"more frames than NumberOfFrames={n}")
            m = pred.mask
            area = int((m > 0).sum())
            if n > 1:
                masks[i] = m
            else:
                masks = m[None]
            per_frame.append({"frame": i, "structures": measure_mask(m, spacing)})
            if area > best[0]:
                best = (area, frame, m)
        if not per_frame:
            raise InputError(path, "no frames decoded")
        res.frames = len(per_frame)
        if n > 1:
            res.mask = str(write_mask_nifti(masks[: res.frames], out / f"{stem}.mask.nii.gz", spacing=spacing))
        else:
            res.mask = str(write_mask_png(masks[0], out / f"{stem}.mask.png"))
        res.overlay = str(write_overlay(best[1], best[2], out / f"{stem}.overlay.png"))
        payload = {"input": path.name, "unit": "mm" if spacing else "px", "pixel_spacing_mm": spacing,
                   "spacing_source": meta.spacing_source, "frames": per_frame if n > 1 else None,
                   "structures": per_frame[0]["structures"] if n == 1 else None}
        res.measurements = str(write_json(payload, out / f"{stem}.measurements.json"))
        if fmt == "dicom" and write_seg:
            from sonoseg.infer.dicom_seg import write_dicom_seg

            labels = {c: f"class {c}" for c in range(1, predictor.classes)} if predictor.classes > 1 else {1: "lesion"}
            seg_masks = np.asarray(masks[: res.frames]) if n > 1 else masks[0]
            res.seg = str(write_dicom_seg(path, seg_masks, out / f"{stem}.seg.dcm", labels=labels,
                                          frame_indices=list(range(res.frames)) if n > 1 else None))
        structs = [s for f in per_frame for s in f["structures"]]
        res.summary = {"frames_with_structures": sum(1 for f in per_frame if f["structures"]),
                       "max_structures_per_frame": max((len(f["structures"]) for f in per_frame), default=0),
                       "max_area": max((s["area"] for s in structs), default=0.0),
                       "max_diameter": max((s["max_diameter"] or 0.0 for s in structs), default=0.0),
                       "unit": "mm" if spacing else "px"}
        res.ok = True
        return res
    finally:
        if tmp is not None:
            del masks
            tmp.close()
            Path(tmp.name).unlink(missing_ok=True)


def _paired(frames: Iterable[np.ndarray], predictor, meta, batch_size: int):
    """Yield (frame, prediction) pairs while streaming in batches of ``batch_size``."""
    buf = []
    for f in frames:
        buf.append(f)
        if len(buf) == batch_size:
            yield from zip(buf, predictor.predict_stream(buf, meta, batch_size))
            buf = []
    if buf:
        yield from zip(buf, predictor.predict_stream(buf, meta, batch_size))


def _predict_volume(predictor, path: Path, out: Path, stem: str) -> InputResult:
    """NIfTI: slice-wise along the last axis (x, y, z), mask written with the source affine."""
    import nibabel as nib

    from sonoseg.infer.measure import measure_mask
    from sonoseg.infer.outputs import write_json, write_overlay

    img = nib.load(str(path))
    data = np.asanyarray(img.dataobj)
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3:
        raise InputError(path, f"expected a 2D/3D NIfTI, got {data.ndim}D")
    zooms = img.header.get_zooms()
    spacing = (float(zooms[1]), float(zooms[0]))  # slice[x, y].T -> rows = y
    masks = np.zeros(data.shape, dtype=np.uint8)
    per, best = [], (-1, None, None)
    for z in range(data.shape[2]):
        sl = np.asarray(data[:, :, z]).T
        pred = predictor.predict(sl.astype(np.float32))
        masks[:, :, z] = pred.mask.T
        per.append({"slice": z, "structures": measure_mask(pred.mask, spacing)})
        a = int(pred.mask.sum())
        if a > best[0]:
            best = (a, sl, pred.mask)
    mpath = out / f"{stem}.mask.nii.gz"
    nib.save(nib.Nifti1Image(masks, img.affine), str(mpath))
    res = InputResult(str(path), ok=True, kind="volume", frames=data.shape[2], mask=str(mpath))
    res.overlay = str(write_overlay(best[1], best[2], out / f"{stem}.overlay.png"))
    res.measurements = str(write_json({"input": path.name, "unit": "mm", "pixel_spacing_mm": spacing, "slices": per},
                                      out / f"{stem}.measurements.json"))
    return res


def predict_inputs(inputs: list[str | Path], out_dir: str | Path, model: Optional[str | Path] = None,
                   backend: str = "auto", threads: Optional[int] = None, batch_size: int = 8,
                   write_seg: bool = True, keep_largest: Optional[bool] = None, min_size: Optional[int] = None,
                   fill_holes: Optional[bool] = None, tta: Optional[tuple[str, ...]] = None, log: Callable[[str], None] = print, show_progress: bool = True,
                   notify: Optional[Callable[[str], None]] = None, predictor=None) -> dict:
    """Run the model on every input; returns the results.json payload (also written to ``out_dir``).
    ``log`` gets one line per input, ``notify`` (default ``log``) the model notes: which backend was
    chosen, what was built for this machine, thread warnings. ``predictor``: an already loaded
    Predictor to reuse (a long-running server loads it once)."""
    from sonoseg.infer.outputs import unique_stem, write_json
    from sonoseg.infer.predictor import Predictor
    from sonoseg.io import detect_format, find_inputs

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if predictor is None:
        predictor = Predictor.from_path(model, backend=backend, threads=threads, keep_largest=keep_largest,
                                        min_size=min_size, fill_holes=fill_holes, tta=tta, log=notify or log)
    be = predictor.backend
    (notify or log)(f"backend: {be.kind}, {be.threads} thread(s)" + (f" ({be.note})" if be.note else ""))
    files, results, taken = [], [], set()
    for p in inputs:
        p = Path(p)
        if not p.exists():
            results.append(InputResult(str(p), ok=False, error=f"{p}: no such file or folder"))
            continue
        try:
            found = find_inputs([p])
        except InputError as exc:
            results.append(InputResult(str(p), ok=False, error=str(exc)))
            continue
        if not found:
            results.append(InputResult(str(p), ok=False, error=f"{p}: no readable inputs found"))
        files.extend(found)
    from sonoseg.cli._common import track

    for path in (track(files, "predicting") if show_progress else files):
        t0 = time.time()
        stem = unique_stem(out, path, taken)
        try:
            fmt = detect_format(path)
            if fmt == "nifti":
                r = _predict_volume(predictor, path, out, stem)
            else:
                r = _predict_dicom_or_image(predictor, path, fmt, out, stem, batch_size, write_seg)
        except SonosegError as exc:
            r = InputResult(str(path), ok=False, error=str(exc) if isinstance(exc, InputError) else f"{path}: {exc}")
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the batch
            r = InputResult(str(path), ok=False, error=f"{path}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        r.seconds = round(time.time() - t0, 3)
        results.append(r)
        log(("ok   " if r.ok else "FAIL ") + (f"{path.name}: {r.frames} frame(s)" if r.ok else r.error))
    payload = {
        "model": str(model) if model else "default",
        "backend": predictor.backend.kind,
        "threads": predictor.backend.threads,
        "n_inputs": len(results),
        "n_ok": sum(r.ok for r in results),
        "n_failed": sum(not r.ok for r in results),
        "results": [asdict(r) for r in results],
    }
    write_json(payload, out / "results.json")
    return payload
