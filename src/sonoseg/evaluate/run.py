"""``evaluate_model``: run a model over one split of a dataset and score it in original pixels (mm
where the image carries pixel spacing). Glue between infer.Predictor and the metric/report modules."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from sonoseg.errors import ConfigError, InputError


def _to_gray(img: np.ndarray) -> np.ndarray:
    if img.ndim == 3 and img.shape[-1] in (3, 4):
        import cv2

        img = cv2.cvtColor(img[..., :3].astype(np.uint8) if img.dtype != np.uint8 else img[..., :3], cv2.COLOR_RGB2GRAY)
    return img


def evaluate_model(
    dataset: str | Path,
    split_file: Optional[str | Path] = None,
    split: str = "test",
    model: Optional[str | Path] = None,
    out_dir: str | Path = "eval",
    backend: str = "auto",
    threads: Optional[int] = None,
    keep_largest: Optional[bool] = None,
    min_size: Optional[int] = None,
    fill_holes: Optional[bool] = None,
    tta: Optional[Sequence[str]] = None,
    n_boot: int = 1000,
    distance_units: str = "auto",
    log: Callable[[str], None] = print,
    show_progress: bool = True,
):
    """Returns the EvalResult and writes metrics.json, per_image.csv and report.md/.html to ``out_dir``."""
    from sonoseg.data import discover_dataset, read_split_csv
    from sonoseg.data.layout import load_mask
    from sonoseg.evaluate import evaluate_pairs, write_metrics
    from sonoseg.evaluate.report import GalleryItem, write_report
    from sonoseg.infer.predictor import Predictor
    from sonoseg.io import load_image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    predictor = Predictor.from_path(model, backend=backend, threads=threads, keep_largest=keep_largest,
                                    min_size=min_size, fill_holes=fill_holes, tta=tta, log=log)
    log(f"backend: {predictor.backend.kind}, {predictor.backend.threads} thread(s)"
        + (f" ({predictor.backend.note})" if predictor.backend.note else ""))
    classes = predictor.classes
    samples = discover_dataset(dataset)
    if split_file is not None:
        assignment = read_split_csv(split_file)
        samples = [s for s in samples if assignment.get(s.stem) == split]
        if not samples:
            raise ConfigError(f"{split_file}: no images of {dataset} in split {split!r}")
    evaluated: dict[str, object] = {}  # stem -> Sample; images are not kept in memory
    failures: list[str] = []

    def run_one(s):
        """(display image, ground truth, prediction, meta) of one sample in original pixels."""
        loaded = load_image(s.image_path)
        img = loaded.pixels
        if loaded.meta.frames > 1 and img.ndim >= 3 and img.shape[0] == loaded.meta.frames:
            img = img[0]
        gt = load_mask(s.mask_path)
        gt = (gt > 0).astype(np.uint8) if classes == 1 else gt.astype(np.uint8)
        pred = predictor.predict(img, loaded.meta)
        if pred.mask.shape != gt.shape:
            raise InputError(s.mask_path, f"mask shape {gt.shape} != image shape {pred.mask.shape}")
        return img, gt, pred.mask, loaded.meta

    def items():
        from sonoseg.cli._common import track

        it = track(samples, f"evaluating {len(samples)} images") if show_progress else samples
        for s in it:
            try:
                _, gt, pred, meta = run_one(s)
            except InputError as exc:
                failures.append(str(exc))
                log(f"skipped {exc}")
                continue
            evaluated[s.stem] = s
            yield s.stem, pred, gt, meta.pixel_spacing_mm

    result = evaluate_pairs(items(), classes=classes, n_boot=n_boot, distance_units=distance_units)
    if not evaluated:
        raise ConfigError(f"{dataset}: no image could be evaluated ({len(failures)} failures)")
    write_metrics(result, out_dir)

    def gallery(stem: str) -> GalleryItem:  # called by the report for best/median/worst only
        img, gt, pred, _ = run_one(evaluated[stem])
        return GalleryItem(stem=stem, image=_to_gray(img), gt=gt, pred=pred)

    write_report(result, out_dir, gallery=gallery)
    if failures:
        (out_dir / "failures.txt").write_text("\n".join(failures) + "\n")
    return result
