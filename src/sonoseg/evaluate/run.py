"""``evaluate_model``: run a model over one split of a dataset and score it in original pixels (mm
where the image carries pixel spacing). Glue between infer.Predictor and the metric/report modules."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from sonoseg._compat.legacy_kwargs import options_with_legacy
from sonoseg.errors import ConfigError, InputError
from sonoseg.evaluate.options import EvaluateOptions


def _to_gray(img: np.ndarray) -> np.ndarray:
    if img.ndim == 3 and img.shape[-1] in (3, 4):
        import cv2

        img = cv2.cvtColor(img[..., :3].astype(np.uint8) if img.dtype != np.uint8 else img[..., :3], cv2.COLOR_RGB2GRAY)
    return img


def _class_row(predictor, sample, pred) -> dict:
    from sonoseg.infer.run import image_decision

    d = image_decision(predictor, int((pred.mask > 0).sum()), pred.class_probabilities, tentative=pred.tentative)
    head = predictor.config.model.classification
    return {"stem": sample.stem, "true_class": sample.cls, "probs": [float(p) for p in pred.class_probabilities],
            "head_no_lesion": head is not None and d["class"] == head.no_lesion_class,
            "mask_empty": not bool((pred.mask > 0).any()), "lesion_found": bool(d.get("lesion_found", d["found"])),
            "tentative": bool(pred.tentative)}


def _auto_units(samples, log) -> str:
    """'auto' means mm when every image has a pixel spacing and px otherwise (the --units help): decided
    up front from the headers, so a dataset mixing NIfTI (spacing) and PNG (none) is scored in px
    instead of aborting half-way."""
    from sonoseg.io import read_meta

    have = set()
    for s in samples:
        try:
            have.add(read_meta(s.image_path).pixel_spacing_mm is not None)
        except InputError:
            continue  # reported when the image itself is evaluated
    if have == {True, False}:
        log("note: some images have a pixel spacing and some do not: HD95/ASSD are reported in pixels")
        return "px"
    return "auto"


def evaluate_model(
    dataset: str | Path,
    options: Optional[EvaluateOptions] = None,
    *,
    log: Callable[[str], None] = print,
    progress: Optional[Callable[[str, int, int], None]] = None,
    **legacy,
):
    """Score the model of ``options`` on ``dataset``; returns the EvalResult and writes metrics.json,
    per_image.csv and report.md/.html to ``options.out_dir`` (see :class:`EvaluateOptions`).

    With ``measurements`` (or a ``reference`` column) also measurement_agreement.json,
    measurements_per_image.csv and bland_altman.png (:mod:`sonoseg.evaluate.agreement`).
    ``progress(label, done, total)`` is called per image. The keywords of the old signature
    (``model=``, ``out_dir=``, ``n_boot=`` ...) still work this release, with a DeprecationWarning."""
    o = options_with_legacy(EvaluateOptions, options, legacy, "evaluate_model", positional="split_file",
                            ignored=("show_progress",))
    from sonoseg.evaluate import evaluate_pairs, write_metrics
    from sonoseg.evaluate.report import write_report

    out_dir = Path(o.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = _Evaluation(_predictor(o, log), o, _references(Path(dataset), o.reference), log)
    samples = _samples_to_score(dataset, o, log)
    distance_units = _auto_units(samples, log) if o.distance_units == "auto" else o.distance_units
    result = evaluate_pairs(run.items(samples, progress), classes=run.classes, n_boot=o.n_boot,
                            distance_units=distance_units)
    if not run.evaluated:
        raise ConfigError(f"{dataset}: no image could be evaluated ({len(run.failures)} failures)")
    write_metrics(result, out_dir)
    _record_spacing(out_dir / "metrics.json", run.sources)
    run.write_measurements(result, out_dir)
    if o.report:
        write_report(result, out_dir, gallery=run.gallery)
    run.write_classes(result, out_dir)
    if run.failures:
        (out_dir / "failures.txt").write_text("\n".join(run.failures) + "\n")
    return result


def _predictor(o: EvaluateOptions, log):
    """The Predictor of ``o.model`` with the options and config overrides of this evaluation."""
    from sonoseg.infer.options import ModelOptions
    from sonoseg.infer.predictor import Predictor
    from sonoseg.infer.run import apply_config

    model_options = ModelOptions(backend=o.backend, threads=o.threads, keep_largest=o.keep_largest,
                                 min_size=o.min_size, fill_holes=o.fill_holes, tta=o.tta,
                                 tentative_outline=o.tentative_outline)
    predictor = Predictor.from_path(o.model, model_options, log=log)
    log(f"backend: {predictor.backend.kind}, {predictor.backend.threads} thread(s)"
        + (f" ({predictor.backend.note})" if predictor.backend.note else ""))
    apply_config(predictor, o.config, model_options)
    return predictor


def _samples_to_score(dataset, o: EvaluateOptions, log) -> list:
    """The dataset's images that have a ground-truth mask, of ``o.split`` when a split file is given."""
    from sonoseg.data import discover_dataset, read_split_csv

    samples = discover_dataset(dataset)
    labelled = [s for s in samples if s.mask_path is not None]
    if not labelled:
        missing = not (Path(dataset) / "masks").is_dir()
        raise ConfigError(f"{dataset}: no image has a ground-truth mask"
                          + (" (the masks/ folder is missing)" if missing else "") + "; nothing to evaluate")
    if len(labelled) < len(samples):
        log(f"note: {len(samples) - len(labelled)} image(s) without a mask are not evaluated")
    if o.split_file is None:
        return labelled
    assignment = read_split_csv(o.split_file)
    chosen = [s for s in labelled if assignment.get(s.stem) == o.split]
    if not chosen:
        raise ConfigError(f"{o.split_file}: no images of {dataset} in split {o.split!r}")
    return chosen


class _Evaluation:
    """One evaluation's running state: what has been scored (stem -> Sample; images are not kept in memory, the
    report's gallery runs its few again), the class head's rows, where pixel spacings came from, measurement rows
    and the images that could not be read."""

    def __init__(self, predictor, o: EvaluateOptions, refs: list, log):
        from sonoseg.io.spacing import parse_spacing

        self.predictor, self.o, self.refs, self.log = predictor, o, refs, log
        self.classes = predictor.classes
        self.measurements = o.measurements or bool(refs)  # a reference column turns measurements on
        self.biometry = o.biometry
        if self.biometry is None and any(q in ("hc", "bpd", "ofd") for _, q, _ in refs):
            self.biometry = True  # a reference HC/BPD/OFD needs the biometry of every mask
        self.override = parse_spacing(o.spacing) if o.spacing is not None else None
        self.evaluated: dict[str, object] = {}
        self.class_rows: dict[str, dict] = {}  # stem -> class head output + decision (models with a class head)
        self.sources: dict[str, int] = {}
        self.meas_rows: list[dict] = []
        self.failures: list[str] = []

    def run_one(self, s):
        """(display image, ground truth, prediction, meta) of one sample in original pixels."""
        from sonoseg.data.layout import load_mask
        from sonoseg.io import load_image

        loaded = load_image(s.image_path)
        img = loaded.pixels
        if loaded.meta.frames > 1 and img.ndim >= 3 and img.shape[0] == loaded.meta.frames:
            img = img[0]
        gt = load_mask(s.mask_path)
        gt = (gt > 0).astype(np.uint8) if self.classes == 1 else gt.astype(np.uint8)
        pred = self.predictor.predict(img, loaded.meta)
        if pred.mask.shape != gt.shape:
            raise InputError(s.mask_path, f"mask shape {gt.shape} != image shape {pred.mask.shape}")
        if pred.class_probabilities is not None and s.stem not in self.class_rows:
            self.class_rows[s.stem] = _class_row(self.predictor, s, pred)
        return img, gt, pred.mask, loaded.meta

    def items(self, samples: list, progress):
        """(stem, prediction, truth, spacing) of every sample that can be read, for ``evaluate_pairs``."""
        from sonoseg.io.spacing import resolve_spacing

        for k, s in enumerate(samples):
            if progress is not None:
                progress(f"evaluating {len(samples)} images", k, len(samples))
            try:
                _, gt, pred, meta = self.run_one(s)
            except InputError as exc:
                self.failures.append(str(exc))
                self.log(f"skipped {exc}")
                continue
            self.evaluated[s.stem] = s
            sp, src = resolve_spacing(meta.pixel_spacing_mm, meta.spacing_source, self.override, s.spacing)
            self.sources[src or "none (px)"] = self.sources.get(src or "none (px)", 0) + 1
            if self.measurements:
                self.meas_rows.append(self._measurement_row(s.stem, pred, gt, sp, src))
            yield s.stem, pred, gt, sp

    def _measurement_row(self, stem, pred, gt, sp, src):
        from sonoseg.evaluate.agreement import measurement_row
        from sonoseg.infer.frames import MeasureOptions, measure_frame

        opts = MeasureOptions.from_config(self.predictor.config, sp, src, None, contour=self.o.contour,
                                          biometry=self.biometry)
        _, prec = measure_frame(pred, 0, opts)
        opts.ellipse_fit = False  # the truth is measured as drawn
        _, grec = measure_frame(gt, 0, opts)
        return measurement_row(stem, prec, grec, opts.unit, src)

    def gallery(self, stem: str):
        """The report's picture of one image (called for the best, median and worst only)."""
        from sonoseg.evaluate.report import GalleryItem

        img, gt, pred, _ = self.run_one(self.evaluated[stem])
        return GalleryItem(stem=stem, image=_to_gray(img), gt=gt, pred=pred)

    def write_measurements(self, result, out_dir: Path) -> None:
        """Measurement agreement with the truth (and any reference columns), when measurements are on."""
        if not (self.measurements and self.meas_rows):
            return
        from sonoseg.evaluate.agreement import BASE_KEYS, BIOMETRY_KEYS, add_reference, write_agreement

        use_bio = self.biometry if self.biometry is not None else self.predictor.config.measure.biometry
        keys = BASE_KEYS + (BIOMETRY_KEYS if use_bio else ())
        for column, quantity, values in self.refs:
            keys += tuple(add_reference(self.meas_rows, column, quantity, values))
        result.measurement_agreement = write_agreement(self.meas_rows, keys, out_dir)

    def write_classes(self, result, out_dir: Path) -> None:
        """The class head's report (models with one) and, for binary models, miss and false-lesion rates."""
        if self.class_rows:
            from sonoseg.evaluate.class_report import write_class_report

            head = self.predictor.config.model.classification
            rows = [self.class_rows[s] for s in self.evaluated if s in self.class_rows]
            result.class_metrics = write_class_report(rows, list(self.predictor.class_names), result.per_image,
                                                      out_dir, head.no_lesion_class if head else None,
                                                      n_boot=self.o.n_boot)
        if self.classes == 1:
            _record_detection(result, out_dir / "metrics.json",
                              {s: r["lesion_found"] for s, r in self.class_rows.items()})


def _record_detection(result, metrics_path: Path, decisions: dict) -> None:
    """Miss and false-lesion rates (binary models) into the result and metrics.json (``detection``)."""
    import json

    from sonoseg.evaluate.aggregate import jsonable
    from sonoseg.evaluate.detection import detection_summary

    result.detection = detection_summary(result.per_image, decisions)
    data = json.loads(metrics_path.read_text())
    data["detection"] = jsonable(result.detection)
    metrics_path.write_text(json.dumps(data, indent=2))


def _references(dataset: Path, specs: Sequence[str]) -> list[tuple[str, str, dict]]:
    """[(column, quantity, stem -> value)] of the ``--reference-column`` specs, from dataset/labels.csv."""
    if not specs:
        return []
    from sonoseg.data.layout import LABELS_FILE
    from sonoseg.evaluate.agreement import parse_reference, read_reference

    path = dataset / LABELS_FILE
    if not path.is_file():
        raise InputError(path, "not found: --reference-column reads the reference values from the dataset's labels.csv")
    out = []
    for spec in specs:
        column, quantity = parse_reference(spec)
        out.append((column, quantity, read_reference(path, column)))
    return out


def _record_spacing(metrics_path: Path, sources: dict) -> None:
    """Add where each image's pixel spacing came from to metrics.json (every output names its source)."""
    import json

    data = json.loads(metrics_path.read_text())
    data["spacing_sources"] = sources
    metrics_path.write_text(json.dumps(data, indent=2))
