"""``predict_inputs``: files/folders -> per-input outputs + ``results.json``.

Per input: mask in the original geometry (PNG for a 2D image, NIfTI for cine/volumes), overlay PNG,
measurements JSON (mm when pixel spacing is known) and, for DICOM inputs, a DICOM SEG referencing the
source (one SEG frame per source frame). Bad inputs are reported and skipped; the rest are processed.
Cine is streamed in batches; only the 1-byte-per-pixel masks of all frames are kept (memory-mapped in
the run's temporary folder, removed on every exit path). Each finished input is journalled at once
(infer.journal); each output is written atomically and a failed one is reported on its own while the
others are kept and listed (``status`` "partial", ``output_errors``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np

from sonoseg.errors import InputError, OutputError, SonosegError, reason


@dataclass
class InputResult:
    input: str
    ok: bool
    error: Optional[str] = None
    status: str = "failed"  # ok | partial (some outputs failed, see output_errors) | failed
    warnings: list = field(default_factory=list)
    output_errors: dict = field(default_factory=dict)
    kind: Optional[str] = None  # image | cine | volume
    frames: int = 0
    mask: Optional[str] = None
    overlay: Optional[str] = None
    measurements: Optional[str] = None
    seg: Optional[str] = None
    seconds: float = 0.0
    summary: dict = field(default_factory=dict)


def _output(res: InputResult, name: str, write: Callable[[], Path]) -> None:
    """Write one output; a failure is recorded for that output only (the others are kept)."""
    try:
        setattr(res, name, str(write()))
    except MemoryError as exc:
        res.output_errors[name] = reason(exc)
    except Exception as exc:  # noqa: BLE001 - e.g. highdicom refusing a SOP class, disk full
        res.output_errors[name] = reason(exc)


def _finish_status(res: InputResult) -> InputResult:
    written = [k for k in ("mask", "overlay", "measurements", "seg") if getattr(res, k)]
    res.status = "ok" if not res.output_errors else "partial" if written else "failed"
    res.ok = res.status != "failed"
    if res.output_errors:
        res.error = "; ".join(f"{k} not written: {v}" for k, v in res.output_errors.items())
    return res


def _summary(per: list[dict], unit: str) -> dict:
    structs = [s for f in per for s in f["structures"]]
    return {"frames_with_structures": sum(1 for f in per if f["structures"]),
            "max_structures_per_frame": max((len(f["structures"]) for f in per), default=0),
            "max_area": max((s["area"] for s in structs), default=0.0),
            "max_diameter": max((s["max_diameter"] or 0.0 for s in structs), default=0.0),
            "unit": unit}


def _predict_dicom_or_image(predictor, path: Path, fmt: str, out: Path, stem: str, batch_size: int,
                            write_seg: bool, tmpdir: Optional[Path] = None) -> InputResult:
    from sonoseg.infer.measure import measure_mask
    from sonoseg.infer.outputs import write_json, write_mask_nifti, write_mask_png, write_overlay
    from sonoseg.io import iter_frames, read_meta

    meta = read_meta(path)
    spacing = meta.pixel_spacing_mm
    n = max(int(meta.frames or 1), 1)
    res = InputResult(str(path), ok=False, kind="cine" if n > 1 else "image", frames=n, warnings=list(meta.warnings))
    tmp = None
    if n > 1:
        from sonoseg.io.budget import check_declared

        check_declared(path, meta.rows, meta.columns, n, meta.samples_per_pixel)
        tmp = (tmpdir or out) / f"{stem}.masks.npy"
        masks = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, meta.rows, meta.columns))
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
        if len(per_frame) < n:
            raise InputError(path, f"{n} frames declared but only {len(per_frame)} decoded")
        res.frames = len(per_frame)
        if n > 1:
            _output(res, "mask", lambda: write_mask_nifti(masks[: res.frames], out / f"{stem}.mask.nii.gz", spacing=spacing))
        else:
            _output(res, "mask", lambda: write_mask_png(masks[0], out / f"{stem}.mask.png"))
        _output(res, "overlay", lambda: write_overlay(best[1], best[2], out / f"{stem}.overlay.png"))
        payload = {"input": path.name, "unit": "mm" if spacing else "px", "pixel_spacing_mm": spacing,
                   "spacing_source": meta.spacing_source, "warnings": res.warnings,
                   "frames": per_frame if n > 1 else None,
                   "structures": per_frame[0]["structures"] if n == 1 else None}
        _output(res, "measurements", lambda: write_json(payload, out / f"{stem}.measurements.json"))
        if fmt == "dicom" and write_seg:
            from sonoseg.infer.dicom_seg import write_dicom_seg

            labels = {c: f"class {c}" for c in range(1, predictor.classes)} if predictor.classes > 1 else {1: "lesion"}
            seg_masks = np.asarray(masks[: res.frames]) if n > 1 else masks[0]
            _output(res, "seg", lambda: write_dicom_seg(path, seg_masks, out / f"{stem}.seg.dcm", labels=labels,
                                                        frame_indices=list(range(res.frames)) if n > 1 else None))
        res.summary = _summary(per_frame, "mm" if spacing else "px")
        return _finish_status(res)
    finally:
        if tmp is not None:
            del masks
            Path(tmp).unlink(missing_ok=True)


def _paired(frames: Iterable[np.ndarray], predictor, meta, batch_size: int):
    """Yield (frame, prediction) pairs while streaming in batches of ``batch_size``."""
    from sonoseg.io.budget import check_finite

    buf = []
    for f in frames:
        check_finite(meta.path, f)
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
    from sonoseg.infer.outputs import save_nifti, write_json, write_overlay
    from sonoseg.io.budget import check_finite, sane_spacing
    from sonoseg.io.nifti import _open

    img = _open(path)  # checks the declared size against the budget before any voxel is read
    if len(img.shape) not in (2, 3):
        raise InputError(path, f"expected a 2D/3D NIfTI, got {len(img.shape)}D")
    shape = tuple(img.shape) if len(img.shape) == 3 else tuple(img.shape) + (1,)
    zooms = img.header.get_zooms()
    spacing, why = sane_spacing((float(zooms[1]), float(zooms[0])))  # slice[x, y].T -> rows = y
    res = InputResult(str(path), ok=False, kind="volume", frames=shape[2])
    if why:
        res.warnings.append(f"calibration from the NIfTI header dropped: {why}; sizes are in pixels")
    masks = np.zeros(shape, dtype=np.uint8)
    per, best = [], (-1, None, None)
    for z in range(shape[2]):
        try:
            sl = np.asarray(img.dataobj[:, :, z] if len(img.shape) == 3 else img.dataobj).T
        except Exception as exc:  # noqa: BLE001 - truncated / corrupt payload
            raise InputError(path, f"cannot read NIfTI slice {z} ({reason(exc)})") from exc
        check_finite(path, sl, f"slice {z}")
        pred = predictor.predict(sl.astype(np.float32))
        masks[:, :, z] = pred.mask.T
        per.append({"slice": z, "structures": measure_mask(pred.mask, spacing)})
        a = int(pred.mask.sum())
        if a > best[0]:
            best = (a, sl, pred.mask)
    _output(res, "mask", lambda: save_nifti(nib.Nifti1Image(masks, img.affine), out / f"{stem}.mask.nii.gz"))
    _output(res, "overlay", lambda: write_overlay(best[1], best[2], out / f"{stem}.overlay.png"))
    unit = "mm" if spacing else "px"
    _output(res, "measurements", lambda: write_json({"input": path.name, "unit": unit, "pixel_spacing_mm": spacing,
                                                     "warnings": res.warnings, "slices": per},
                                                    out / f"{stem}.measurements.json"))
    res.summary = _summary(per, unit)
    return _finish_status(res)


def predict_inputs(inputs: list[str | Path], out_dir: str | Path, model: Optional[str | Path] = None,
                   backend: str = "auto", threads: Optional[int] = None, batch_size: int = 8,
                   write_seg: bool = True, keep_largest: Optional[bool] = None, min_size: Optional[int] = None,
                   fill_holes: Optional[bool] = None, tta: Optional[tuple[str, ...]] = None, log: Callable[[str], None] = print, show_progress: bool = True,
                   notify: Optional[Callable[[str], None]] = None, resume: bool = False) -> dict:
    """Run the model on every input; returns the results.json payload (also written to ``out_dir``).
    ``log`` gets one line per input, ``notify`` (default ``log``) the model notes: which backend was
    chosen, what was built for this machine, thread warnings. ``resume``: reuse the inputs a previous
    run in ``out_dir`` finished (its results.jsonl journal)."""
    from sonoseg.infer.inputs import expand_inputs
    from sonoseg.infer.journal import Journal
    from sonoseg.infer.outputs import unique_stem, write_json
    from sonoseg.infer.predictor import Predictor
    from sonoseg.io import detect_format
    from sonoseg.io.safety import run_tempdir
    from sonoseg.redact import install

    install()  # third-party warnings quote header values (patient names): redact them
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(out, f"cannot create the output folder: {reason(OSError(exc.errno, exc.strerror))}") from exc
    if isinstance(model, Predictor):  # an already loaded model (many small batches: load it once)
        predictor, model = model, getattr(model, "source", None)
    else:
        predictor = Predictor.from_path(model, backend=backend, threads=threads, keep_largest=keep_largest,
                                        min_size=min_size, fill_holes=fill_holes, tta=tta, log=notify or log)
    be = predictor.backend
    (notify or log)(f"backend: {be.kind}, {be.threads} thread(s)" + (f" ({be.note})" if be.note else ""))
    files, unusable = expand_inputs(inputs)
    results, taken, complete = [], set(), False

    def payload() -> dict:
        return {
            "model": str(model) if model else "default",
            "backend": predictor.backend.kind,
            "threads": predictor.backend.threads,
            "complete": complete,
            "n_inputs": len(results),
            "n_ok": sum(r.status == "ok" for r in results),
            "n_partial": sum(r.status == "partial" for r in results),
            "n_failed": sum(r.status == "failed" for r in results),
            "n_resumed": sum(bool(getattr(r, "resumed", False)) for r in results),
            "results": [_as_dict(r) for r in results],
        }

    from sonoseg.cli._common import track

    with run_tempdir(out) as tmpdir, Journal(out, resume=resume) as journal:
        try:
            for name, why in unusable:
                results.append(InputResult(name, ok=False, error=why))
                journal.record(_as_dict(results[-1]))
            for path in (track(files, "predicting") if show_progress else files):
                t0 = time.time()
                stem = unique_stem(out, path, taken)
                prev = journal.reusable(path) if resume else None
                if prev is not None:
                    r = _Resumed(prev)
                else:
                    r = _predict_one(predictor, path, out, stem, batch_size, write_seg, tmpdir, detect_format)
                    r.seconds = round(time.time() - t0, 3)
                results.append(r)
                journal.record(_as_dict(r))
                log(("ok   " if r.ok else "FAIL ") + (f"{path.name}: {r.frames} frame(s)" if r.ok else r.error))
            complete = True
        finally:
            if not complete:  # interrupted: leave a results.json that says so, with what was finished
                try:
                    write_json(payload(), out / "results.json")
                except Exception:  # noqa: BLE001 - the journal already holds every finished input
                    pass
    data = payload()
    write_json(data, out / "results.json")
    return data


def _predict_one(predictor, path: Path, out: Path, stem: str, batch_size: int, write_seg: bool, tmpdir: Path,
                 detect_format) -> InputResult:
    try:
        fmt = detect_format(path)
        if fmt == "nifti":
            return _predict_volume(predictor, path, out, stem)
        return _predict_dicom_or_image(predictor, path, fmt, out, stem, batch_size, write_seg, tmpdir)
    except SonosegError as exc:
        return InputResult(str(path), ok=False, error=str(exc) if isinstance(exc, InputError) else f"{path}: {exc}")
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the batch
        return InputResult(str(path), ok=False, error=f"{path}: {reason(exc)}")


class _Resumed(dict):
    """A journal record reused by --resume (already a dict; attribute access for the loop)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _as_dict(r) -> dict:
    return dict(r) if isinstance(r, dict) else asdict(r)
