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

from sonoseg.errors import ConfigError, InputError, OutputError, SonosegError, reason
from sonoseg.infer import scope
from sonoseg.infer.options import ModelOptions, PredictOptions


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
    overlay_sc: Optional[str] = None
    video: Optional[str] = None
    seconds: float = 0.0
    summary: dict = field(default_factory=dict)


@dataclass
class RunSettings:
    """Per-run state shared by every input: the options and what was resolved from them for this model."""

    options: PredictOptions = field(default_factory=PredictOptions)
    temporal_window: int = 1  # the option's, else the model's postprocess.temporal_window
    domain: object = None  # DomainScorer or None
    progress: Optional[Callable[[str, int, int], None]] = None  # (input name, frames done, frames total)
    spacing_table: object = None  # data.spacing_table.SpacingTable: per-image spacing (labels.csv, --spacing-file)

    def resolve_spacing(self, path: Path, own, own_source):
        """(spacing, source): --spacing, else the spacing table's row for ``path``, else the file's own."""
        from sonoseg.io.spacing import resolve_spacing

        table, table_source = self.spacing_table.lookup(path) if self.spacing_table is not None else (None, None)
        return resolve_spacing(own, own_source, self.options.spacing, table, table_source or "labels.csv")


def _output(res: InputResult, name: str, write: Callable[[], Path]) -> None:
    """Write one output; a failure is recorded for that output only (the others are kept)."""
    try:
        setattr(res, name, str(write()))
    except MemoryError as exc:
        res.output_errors[name] = reason(exc)
    except Exception as exc:  # noqa: BLE001 - e.g. highdicom refusing a SOP class, disk full
        res.output_errors[name] = reason(exc)


def _finish_status(res: InputResult) -> InputResult:
    written = [k for k in ("mask", "overlay", "measurements", "seg", "overlay_sc", "video") if getattr(res, k)]
    res.status = "ok" if not res.output_errors else "partial" if written else "failed"
    res.ok = res.status != "failed"
    if res.output_errors:
        res.error = "; ".join(f"{k} not written: {v}" for k, v in res.output_errors.items())
    return res


def _predict_dicom_or_image(predictor, path: Path, fmt: str, out: Path, stem: str,
                            settings: Optional[RunSettings] = None, tmpdir: Optional[Path] = None) -> InputResult:
    from sonoseg.infer.cine_outputs import OverlayVideo
    from sonoseg.infer.frames import MeasureOptions, chosen_reason, overlay_caption, payload, summary
    from sonoseg.infer.outputs import write_json, write_mask_nifti, write_mask_png, write_overlay
    from sonoseg.io import read_meta

    st = settings or RunSettings()
    o = st.options
    meta = read_meta(path)
    n = max(int(meta.frames or 1), 1)
    spacing, source = st.resolve_spacing(path, meta.pixel_spacing_mm, meta.spacing_source)
    opts = MeasureOptions.from_config(predictor.config, spacing, source, meta.frame_time_ms if n > 1 else None,
                                      **o.measure)
    res = InputResult(str(path), ok=False, kind="cine" if n > 1 else "image", frames=n, warnings=list(meta.warnings))
    tmp = masks = None  # a cine's masks: memory-mapped in the temporary folder, removed on every exit path
    if n > 1:
        from sonoseg.io.budget import check_declared

        check_declared(path, meta.rows, meta.columns, n, meta.samples_per_pixel)
        tmp = (tmpdir or out) / f"{stem}.masks.npy"
        masks = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, meta.rows, meta.columns))
    video = OverlayVideo(out / f"{stem}.overlay.webp", opts.frame_time_ms) if o.video and n > 1 else None
    window = st.temporal_window if (n > 1 and predictor.classes == 1) else 1
    try:
        scan, masks = _scan_frames(predictor, path, meta, n, masks, opts, window, video, o.batch_size, st.progress)
        per_frame = scan.per_frame
        if not per_frame:
            raise InputError(path, "no frames decoded")
        if len(per_frame) < n:
            raise InputError(path, f"{n} frames declared but only {len(per_frame)} decoded")
        res.frames = len(per_frame)
        chosen = scan.chosen
        if n > 1:
            _output(res, "mask", lambda: write_mask_nifti(masks[: res.frames], out / f"{stem}.mask.nii.gz",
                                                          spacing=opts.spacing, frame_time_ms=opts.frame_time_ms))
        else:
            _output(res, "mask", lambda: write_mask_png(masks[0], out / f"{stem}.mask.png", spacing=opts.spacing))
        domain = st.domain.assess(scan.grid) if st.domain is not None and scan.grid is not None else None
        in_scope = None if domain is None else domain["in_scope"]
        why = chosen_reason(per_frame[chosen], opts)
        mean_probs = None if scan.class_sum is None else scan.class_sum / len(per_frame)
        decision = image_decision(predictor, int((scan.mask > 0).sum()) if scan.mask is not None else 0, mean_probs, o,
                                  scan.tentative)
        caption = [c for c in [decision_label(decision)] if c] + list(overlay_caption(per_frame[chosen], opts, res.frames, why))
        shown, caption, bio, banner = scope.overlay_labels(scan.mask, caption, per_frame[chosen].get("biometry"),
                                                           domain)
        _output(res, "overlay", lambda: write_overlay(scan.frame, shown, out / f"{stem}.overlay.png", caption=caption,
                                                      biometry=bio, spacing=opts.spacing, banner=banner))
        if video is not None and scope.out_of_scope(domain):
            res.warnings.append("overlay video not written: out of scope")
        elif video is not None:
            _output(res, "video", video.close)
        extra = {"chosen_frame_reason": why, "temporal_window": window, "domain": domain, "in_scope": in_scope,
                 "warnings": res.warnings, "model_version": predictor.model_version,
                 **scope.decision_fields(decision, domain)}
        _output(res, "measurements", lambda: write_json(payload(path.name, res.kind, per_frame, opts, chosen, **extra),
                                                        out / f"{stem}.measurements.json"))
        if fmt == "dicom" and in_scope is not False:
            _dicom_outputs(res, predictor, path, out, stem, masks, n, meta.series_uid, decision, chosen, o)
        res.summary = summary(per_frame, opts, chosen)
        res.summary.update({"confidence": per_frame[chosen].get("confidence"), "in_scope": in_scope,
                            "domain_score": None if domain is None else domain["score"], **_decision_summary(decision)})
        res.summary = scope.present(res.summary, domain)
        return _finish_status(res)
    finally:
        if video is not None:
            video.frames = []
        if tmp is not None:
            del masks
            Path(tmp).unlink(missing_ok=True)


@dataclass
class _Scan:
    """What the frame loop keeps of an image or cine: every frame's measurement record, the chosen frame (the
    largest segmented area; its pixels, mask and model-grid image), and the class probabilities summed over frames
    (the image-level class is their mean)."""

    per_frame: list = field(default_factory=list)
    area: float = -1.0
    chosen: Optional[int] = None
    frame: Optional[np.ndarray] = None
    mask: Optional[np.ndarray] = None
    grid: Optional[np.ndarray] = None
    tentative: bool = False  # the chosen frame's mask is a tentative outline (not after temporal smoothing)
    class_sum: Optional[np.ndarray] = None


def _scan_frames(predictor, path: Path, meta, n: int, masks, opts, window: int, video, batch_size: int,
                 progress) -> tuple[_Scan, np.ndarray]:
    """Predict, smooth (``window`` frames), measure and keep every frame of ``path``, streamed in batches: the
    masks go into ``masks`` (a cine's memory map; for one image a new 1 x H x W array, returned)."""
    from sonoseg.infer.cine_outputs import temporal_smooth
    from sonoseg.infer.domain import confidence
    from sonoseg.infer.frames import frame_area, measure_frame
    from sonoseg.infer.outputs import render_overlay
    from sonoseg.io import iter_frames

    scan = _Scan()
    stream = temporal_smooth(_paired(iter_frames(path), predictor, meta, batch_size), window,
                             predictor.mask_from_probability)
    for i, (frame, pred, m, prob) in enumerate(stream):
        if i >= n:
            raise InputError(path, f"more frames than NumberOfFrames={n}")
        m, rec = measure_frame(m, i, opts)
        rec["confidence"] = confidence(m, prob)
        if pred.class_probabilities is not None:
            scan.class_sum = pred.class_probabilities if scan.class_sum is None \
                else scan.class_sum + pred.class_probabilities
        if n > 1:
            masks[i] = m
        else:
            masks = m[None]
        scan.per_frame.append(rec)
        area = frame_area(rec)
        if area > scan.area:
            scan.area, scan.chosen, scan.frame, scan.mask, scan.grid = area, i, frame, m, pred.grid_image
            scan.tentative = pred.tentative and window == 1
        if video is not None:
            video.add(render_overlay(frame, m, caption=[f"frame {i + 1}/{n}"], biometry=rec.get("biometry"),
                                     spacing=opts.spacing))
        if progress is not None:
            progress(path.name, i + 1, n)
    return scan, masks


def _dicom_outputs(res: InputResult, predictor, path: Path, out: Path, stem: str, masks, n: int,
                   series_uid: Optional[str], decision: dict, chosen: int, o: PredictOptions) -> None:
    """The DICOM outputs of a DICOM input in scope: the SEG of every analysed frame (with the finding) and the
    overlay as a secondary capture, each written atomically and reported on its own."""
    if o.write_seg:
        from sonoseg.infer.structures import structure_names
        from sonoseg.outputs.dicom_seg import SegWriteOptions, write_dicom_seg

        labels = structure_names(predictor.config)
        seg_masks = np.asarray(masks[: res.frames]) if n > 1 else masks[0]

        def seg() -> Path:
            from sonoseg.io.safety import atomic_path

            series = output_series(predictor, "seg", series_uid)
            with atomic_path(out / f"{stem}.seg.dcm", "DICOM SEG") as tmp:
                write_dicom_seg(path, seg_masks, tmp, SegWriteOptions(
                    labels=labels, series_instance_uid=series,
                    frame_indices=list(range(res.frames)) if n > 1 else None,
                    finding=decision if decision["class"] is not None else None))
            return out / f"{stem}.seg.dcm"

        _output(res, "seg", seg)
    if o.overlay_sc and res.overlay:
        def capture() -> Path:
            import cv2

            from sonoseg.io.safety import atomic_path
            from sonoseg.outputs.dicom_sc import write_overlay_sc

            rgb = cv2.cvtColor(cv2.imread(res.overlay, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            with atomic_path(out / f"{stem}.overlay.dcm", "overlay capture") as tmp:
                write_overlay_sc(path, rgb, tmp, frame_index=chosen if n > 1 else None,
                                 series_instance_uid=output_series(predictor, "sc", series_uid))
            return out / f"{stem}.overlay.dcm"

        _output(res, "overlay_sc", capture)


def output_series(predictor, kind: str, source_series: Optional[str]) -> Optional[str]:
    """The series UID of the ``kind`` outputs (SEG, overlay capture) of one source series: the SEGs of
    a series' images, one per image, form one series, as a viewer lists them, not one per image.

    Derived (hashed, as pydicom's ``generate_uid(entropy_srcs=...)``) from the source series and what
    decides the masks: model version, threshold, postprocessing and TTA. So a study that reaches
    ``listen`` in two batches, or images of one series segmented in two runs, add to one SEG series,
    while another model or setting gives a series of its own. The source UID cannot be recovered from it.
    """
    from pydicom.uid import generate_uid

    if not source_series:
        return None
    return generate_uid(entropy_srcs=[f"sonoseg-{kind}-series", source_series, str(predictor.model_version),
                                      repr(float(predictor.threshold)), repr(predictor.post), repr(tuple(predictor.tta))])


def image_decision(predictor, mask_pixels: int, class_probs, options: Optional[PredictOptions] = None,
                   tentative: bool = False) -> dict:
    """The found / class decision of :mod:`sonoseg.infer.decision` for one input, in the model's words
    (its stored policy; ``options`` may override parts of it). ``tentative``: the mask is the predictor's
    tentative outline (``outline: "tentative"`` and a note to review it)."""
    from dataclasses import replace

    from sonoseg.infer.decision import DecisionPolicy, decide

    from sonoseg.infer.structures import structure_name

    head = predictor.config.model.classification
    policy = DecisionPolicy.from_head(head)
    if options is not None and options.suspicious_threshold is not None:
        policy = replace(policy, suspicious_threshold=float(options.suspicious_threshold))
    out = decide(max(int(mask_pixels), 0), class_probs, predictor.class_names,
                 head.no_lesion_class if head is not None else None, policy, structure_name(predictor.config))
    if tentative and out["found"] and int(mask_pixels) > 0:
        out["outline"] = "tentative"
        out["note"] += "; tentative outline (the mask head stayed below its threshold): review it"
    return out


def decision_label(decision: dict) -> str:
    """One line for the overlay picture, e.g. 'malignant 0.91' or 'no lesion found'."""
    cls = decision.get("class")
    if cls is None:
        return ""
    p = (decision.get("class_probabilities") or {}).get(cls)
    return f"{cls} {p:.2f}" + (" SUSPICIOUS" if decision.get("suspicious") else "") \
        + (" (tentative outline)" if decision.get("outline") == "tentative" else "") \
        + ("" if decision["agreement"] else f" ({decision['note']})")


def _decision_summary(decision: dict) -> dict:
    out = {"class": decision["class"], "class_probabilities": decision["class_probabilities"],
           "found": decision["found"], "structure": decision["structure"], "decision_source": decision["source"]}
    for key in ("lesion_found", "suspicious", "suspicious_threshold", "outline"):  # only where they apply
        if key in decision:
            out[key] = decision[key]
    return out


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


def _predict_volume(predictor, path: Path, out: Path, stem: str, settings: Optional[RunSettings] = None) -> InputResult:
    """NIfTI: slice-wise along the last axis (x, y, z), mask written with the source affine."""
    import nibabel as nib

    from sonoseg.infer.domain import confidence
    from sonoseg.infer.frames import (MeasureOptions, chosen_reason, frame_area, measure_frame, overlay_caption, payload,
                                      summary)
    from sonoseg.infer.outputs import save_nifti, write_json, write_overlay
    from sonoseg.io.budget import check_finite, sane_spacing
    from sonoseg.io.nifti import open_nifti

    st = settings or RunSettings()
    img = open_nifti(path)  # checks the declared size against the budget before any voxel is read
    if len(img.shape) not in (2, 3):
        raise InputError(path, f"expected a 2D/3D NIfTI, got {len(img.shape)}D")
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # noqa: BLE001 - truncated / corrupt payload
        raise InputError(path, f"cannot read NIfTI voxel data ({reason(exc)})") from exc
    if data.ndim == 2:
        data = data[..., None]
    check_finite(path, data, "volume")
    zooms = img.header.get_zooms()
    notes = []
    own, why = sane_spacing((float(zooms[1]), float(zooms[0])))  # slice[x, y].T -> rows = y
    if why:
        notes.append(f"calibration from the NIfTI header dropped: {why}; sizes are in pixels")
    spacing, source = st.resolve_spacing(path, own, "NIfTI pixdim" if own else None)
    opts = MeasureOptions.from_config(predictor.config, spacing, source, None, **st.options.measure)
    masks = np.zeros(data.shape, dtype=np.uint8)
    per, best = [], (-1.0, 0, None, None, None)
    best_tentative = False
    class_sum = None
    for z in range(data.shape[2]):
        sl = np.asarray(data[:, :, z]).T
        pred = predictor.predict(sl.astype(np.float32))
        if pred.class_probabilities is not None:
            class_sum = pred.class_probabilities if class_sum is None else class_sum + pred.class_probabilities
        m, rec = measure_frame(pred.mask, z, opts)
        rec["confidence"] = confidence(m, pred.probability)
        masks[:, :, z] = m.T
        per.append(rec)
        if frame_area(rec) > best[0]:
            best = (frame_area(rec), z, sl, m, pred.grid_image)
            best_tentative = pred.tentative
        if st.progress is not None:
            st.progress(path.name, z + 1, data.shape[2])
    res = InputResult(str(path), ok=False, kind="volume", frames=data.shape[2], warnings=notes)
    _output(res, "mask", lambda: save_nifti(nib.Nifti1Image(masks, img.affine), out / f"{stem}.mask.nii.gz"))
    domain = st.domain.assess(best[4]) if st.domain is not None and best[4] is not None else None
    in_scope = None if domain is None else domain["in_scope"]
    chosen = best[1]
    why = chosen_reason(per[chosen], opts)
    decision = image_decision(predictor, int((best[3] > 0).sum()) if best[3] is not None else 0,
                              None if class_sum is None else class_sum / data.shape[2], st.options, best_tentative)
    caption = [c for c in [decision_label(decision)] if c] + list(overlay_caption(per[chosen], opts, len(per), why))
    shown, caption, bio, banner = scope.overlay_labels(best[3], caption, per[chosen].get("biometry"), domain)
    _output(res, "overlay", lambda: write_overlay(best[2], shown, out / f"{stem}.overlay.png", caption=caption,
                                                  biometry=bio, spacing=opts.spacing, banner=banner))
    _output(res, "measurements", lambda: write_json(payload(path.name, "volume", per, opts, chosen, chosen_frame_reason=why,
                                                            domain=domain, in_scope=in_scope, warnings=res.warnings,
                                                            model_version=predictor.model_version,
                                                            **scope.decision_fields(decision, domain)),
                                                    out / f"{stem}.measurements.json"))
    res.summary = summary(per, opts, chosen)
    res.summary.update({"confidence": per[chosen].get("confidence"), "in_scope": in_scope,
                        "domain_score": None if domain is None else domain["score"], **_decision_summary(decision)})
    res.summary = scope.present(res.summary, domain)
    return _finish_status(res)


def _model_name(predictor) -> str:
    """What results.json calls a model given by no --model: its shipped name (fast, accurate, v3)."""
    from sonoseg.models.shipped import tier_of

    path = getattr(predictor, "path", None)
    return (tier_of(Path(path)) if path else None) or (str(path) if path else "default")


def predict_inputs(inputs: list[str | Path], out_dir: str | Path, options: Optional[PredictOptions] = None, *,
                   predictor=None, log: Callable[[str], None] = print, notify: Optional[Callable[[str], None]] = None,
                   progress: Optional[Callable[[str, int, int], None]] = None, **legacy) -> dict:
    """Run the model on every input; returns the results.json payload (also written to ``out_dir``).

    ``options``: what to run and how (:class:`~sonoseg.infer.options.PredictOptions`; None: the
    defaults, the shipped model). ``predictor``: an already loaded Predictor to reuse (a long-running
    server loads it once); ``options.model`` and its loading fields are then not used.
    ``log`` gets one line per input, ``notify`` (default ``log``) the model notes: which backend was
    chosen, what was built for this machine, thread warnings; ``progress(name, frames_done,
    frames_total)`` is called after every frame. Every finished input is journalled at once
    (``options.resume`` reuses them). ``legacy``: the previous release's keyword arguments (``model=``,
    ``threads=`` ...), folded into ``options`` with a DeprecationWarning."""
    from sonoseg.infer.inputs import expand_inputs
    from sonoseg.infer.journal import Journal
    from sonoseg.infer.sop_class import describe_skipped, split_images
    from sonoseg.infer.outputs import unique_stem, write_json
    from sonoseg.io.safety import run_tempdir
    from sonoseg.redact import install

    install()  # third-party warnings quote header values (patient names): redact them
    o, predictor = _with_legacy(options, predictor, legacy)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(out, f"cannot create the output folder: {reason(OSError(exc.errno, exc.strerror))}") from exc
    predictor, settings = _prepare(o, predictor, notify or log, progress)
    files, unusable = expand_inputs(inputs)
    files, not_images = split_images(files)  # SEG, SR, PR, KO ... are not segmented (infer.sop_class)
    if not_images:
        log(f"skipped {describe_skipped(not_images)}")
    results, taken, complete = [], set(), False

    def payload() -> dict:
        return _results_payload(o, predictor, settings.domain is not None, results, not_images, complete)

    with run_tempdir(out) as tmpdir, Journal(out, resume=o.resume) as journal:
        try:
            for name, why in unusable:
                results.append(InputResult(name, ok=False, error=why))
                journal.record(_as_dict(results[-1]))
            for path in files:
                t0 = time.time()
                stem = unique_stem(out, path, taken)
                prev = journal.reusable(path) if o.resume else None
                if prev is not None:
                    r = _Resumed(prev)
                else:
                    r = _predict_one(predictor, path, out, stem, settings, tmpdir)
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


def _prepare(o: PredictOptions, predictor, notify, progress) -> tuple:
    """(predictor, run settings): the model loaded (or the given one reused) with this run's config overrides,
    checked against the options, and the domain scorer of the model that actually runs."""
    from sonoseg.data.spacing_table import SpacingTable
    from sonoseg.infer.predictor import Predictor

    if predictor is None:
        predictor = Predictor.from_path(o.model, o, log=notify)
    be = predictor.backend
    notify(f"backend: {be.kind}, {be.threads} thread(s)" + (f" ({be.note})" if be.note else ""))
    apply_config(predictor, o.config, o)
    head = predictor.config.model.classification
    if o.suspicious_threshold is not None and (head is None or not head.suspicious_class):
        raise ConfigError(f"--suspicious-threshold: model {predictor.model_version} names no suspicious class "
                          "(model.classification.suspicious_class)")
    window = o.temporal_window if o.temporal_window is not None else predictor.config.postprocess.temporal_window
    scorer = None
    if o.domain:
        from sonoseg.infer.domain import DomainScorer

        # the statistics of the model that runs: a reused predictor's own file, not the shipped default
        own = getattr(predictor, "path", None) or o.model
        scorer = DomainScorer.for_model(own, getattr(predictor.backend, "model", None)
                                        if getattr(predictor.backend, "kind", "") == "torch" else None)
    return predictor, RunSettings(o, int(window), scorer, progress, SpacingTable(o.spacing_file))


def _results_payload(o: PredictOptions, predictor, domain_check: bool, results: list, not_images: dict,
                     complete: bool) -> dict:
    """results.json: the model and how it ran, counts by status, and every input's result."""
    return {
        "model": str(o.model) if o.model else _model_name(predictor),
        "model_version": predictor.model_version,
        "class_names": list(predictor.class_names),
        "backend": predictor.backend.kind,
        "threads": predictor.backend.threads,
        "threshold": predictor.threshold,
        "spacing_override_mm": list(o.spacing) if o.spacing else None,
        "domain_check": domain_check,
        "complete": complete,
        "n_inputs": len(results),
        "n_ok": sum(r.status == "ok" for r in results),
        "n_partial": sum(r.status == "partial" for r in results),
        "n_failed": sum(r.status == "failed" for r in results),
        "n_resumed": sum(bool(getattr(r, "resumed", False)) for r in results),
        "n_out_of_scope": sum(1 for r in results if r.ok and (r.summary or {}).get("in_scope") is False),
        "n_not_images": sum(not_images.values()),
        "not_images": dict(not_images),
        "results": [_as_dict(r) for r in results],
    }


def _predict_one(predictor, path: Path, out: Path, stem: str, settings: RunSettings, tmpdir: Path) -> InputResult:
    from sonoseg.io import detect_format

    try:
        fmt = detect_format(path)
        if fmt == "nifti":
            return _predict_volume(predictor, path, out, stem, settings)
        return _predict_dicom_or_image(predictor, path, fmt, out, stem, settings, tmpdir)
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


def _with_legacy(options, predictor, legacy: dict):
    """(PredictOptions, predictor) from the new arguments and the previous release's keywords: the old
    third positional ``model`` (a path or a loaded Predictor), ``model=``, ``threads=`` ..."""
    if options is not None and not isinstance(options, PredictOptions):
        legacy = {"model": options, **legacy}
        options = None
    legacy.pop("show_progress", None)  # ignored since the release before
    if legacy.get("model") is not None and hasattr(legacy["model"], "predict_stream"):  # a loaded Predictor
        predictor = predictor if predictor is not None else legacy["model"]
        legacy["model"] = None
    from sonoseg._compat.legacy_kwargs import options_with_legacy

    return options_with_legacy(PredictOptions, options, legacy, "predict_inputs", none_is_default=True,
                               stacklevel=4), predictor


def apply_config(predictor, config, options: Optional[ModelOptions] = None) -> None:
    """A config file (``-c``) over the model's own settings: the ``postprocess`` fields the file sets
    and its ``measure`` section replace the model's; the fields ``options`` gives (CLI flags) win over both."""
    if config is None:
        return
    from sonoseg.config import SonosegConfig, load_config
    from sonoseg.infer.predictor import merge_postprocess

    o = options or ModelOptions()
    cfg = config if isinstance(config, SonosegConfig) else load_config(config)
    given = cfg.postprocess.model_fields_set
    pp = predictor.config.postprocess.model_copy(update={k: getattr(cfg.postprocess, k) for k in given})
    measure = cfg.measure if "measure" in cfg.model_fields_set else predictor.config.measure
    predictor.config = predictor.config.model_copy(update={"measure": measure, "postprocess": pp})
    if o.threshold is None and "threshold" in given:
        predictor.threshold = pp.threshold
    if o.tta is None and "tta" in given:
        predictor.tta = tuple(pp.tta)
    predictor.post = merge_postprocess(predictor.config, o.keep_largest, o.min_size, o.fill_holes, o.tentative_outline)

