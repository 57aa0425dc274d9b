"""Export a trained model for deployment: ONNX (fp32), ONNX int8 (static QDQ), TorchScript.

:func:`export_model` is the one entry point: it exports every requested format, checks each
against PyTorch (logits max-abs-diff at export, then Dice on the validation split), and writes
only the formats whose Dice drop versus PyTorch is within ``tolerance``. Everything is built in a
staging folder inside ``out_dir`` and moved into place only once accepted, so a refused model
never appears on disk, not even half-written.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from sonoseg.errors import ConfigError, SonosegError
from sonoseg._compat.legacy_kwargs import options_with_legacy
from sonoseg.export.options import FORMATS, ExportOptions
from sonoseg.runtime.agreement import per_image_agreement, predict_class_probs, predict_masks
from sonoseg.runtime.onnx_export import ExportError, OnnxOptions, export_onnx, read_onnx_config
from sonoseg.runtime.quantize import quantize_dynamic_int8, quantize_static_int8
from sonoseg.runtime.torchscript import export_torchscript, load_torchscript

FILE_NAMES = {"onnx": "{stem}.onnx", "onnx-int8": "{stem}.int8.onnx", "torchscript": "{stem}.ts"}
BACKEND_OF = {"onnx": "onnx", "onnx-int8": "onnx-int8", "torchscript": "torch"}
REPORT_NAME = "export_report.json"


class ExportRefused(SonosegError):
    """An exported model lost more Dice than allowed; it was not written. ``report`` has the numbers."""

    def __init__(self, message: str, report: ExportReport):
        super().__init__(message)
        self.report = report


@dataclass
class ExportReport:
    checkpoint: str
    out_dir: Path
    formats: tuple[str, ...]
    tolerance: float
    files: dict[str, str] = field(default_factory=dict)  # format -> written path
    details: dict[str, dict] = field(default_factory=dict)  # format -> exporter/quantiser result
    dice: dict[str, float] = field(default_factory=dict)  # "torch" and each format: mean val Dice
    dice_delta: dict[str, float] = field(default_factory=dict)  # format Dice - torch Dice
    agreement: dict[str, float] = field(default_factory=dict)  # pooled Dice of format masks vs torch masks
    agreement_mean: dict[str, float] = field(default_factory=dict)  # mean per-image Dice vs torch masks
    agreement_worst: dict[str, float] = field(default_factory=dict)  # worst per-image Dice vs torch masks
    min_agreement: float = 0.0
    min_worst_agreement: float = 0.0
    refused: dict[str, str] = field(default_factory=dict)  # format -> reason
    # models with a class head: max |class probability - torch's| and argmax agreement on the val images
    class_prob_diff: dict[str, float] = field(default_factory=dict)
    class_agreement: dict[str, float] = field(default_factory=dict)
    n_val: int = 0
    n_calib: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "checkpoint": self.checkpoint, "out_dir": str(self.out_dir), "formats": list(self.formats),
            "tolerance": self.tolerance, "files": self.files, "details": self.details, "dice": self.dice,
            "dice_delta": self.dice_delta, "agreement": self.agreement, "agreement_mean": self.agreement_mean,
            "agreement_worst": self.agreement_worst, "min_agreement": self.min_agreement,
            "min_worst_agreement": self.min_worst_agreement, "refused": self.refused,
            "class_prob_diff": self.class_prob_diff, "class_agreement": self.class_agreement,
            "n_val": self.n_val, "n_calib": self.n_calib, "seconds": round(self.seconds, 2),
        }  # fmt: skip

    def lines(self) -> list[str]:
        """Human summary, one line per format."""
        out = []
        if "torch" in self.dice:
            out.append(f"pytorch      Dice {self.dice['torch']:.4f} on {self.n_val} validation images")
        for f in self.formats:
            d = self.details.get(f, {})
            diff = d.get("max_abs_diff") or {}
            parts = [f"{f:<12}"]
            if f in self.dice:
                parts.append(f"Dice {self.dice[f]:.4f} ({self.dice_delta[f]:+.4f} vs torch)")
            if f in self.agreement_mean:
                whose = "the int8 simulation's" if d.get("reference") else "torch's"
                parts.append(f"masks agree with {whose}: mean {self.agreement_mean[f]:.4f}, worst "
                             f"{self.agreement_worst[f]:.4f}")
                if d.get("agreement_lesion_frames"):
                    le = d["agreement_lesion_frames"]
                    parts.append(f"(lesion frames: mean {le['mean']:.4f}, worst {le['worst']:.4f})")
                if d.get("agreement_with_fp32"):
                    fp = d["agreement_with_fp32"]
                    parts.append(f"(with fp32's: mean {fp['mean']:.4f}, worst {fp['worst']:.4f})")
            if diff:
                parts.append(f"max|Δlogit| {max(diff.values()):.1e}")
            if f in self.class_prob_diff:
                parts.append(f"class max|Δp| {self.class_prob_diff[f]:.1e}, same class {self.class_agreement[f]:.1%}")
            parts.append(f"-> {self.files[f]}" if f in self.files else f"NOT WRITTEN: {self.refused.get(f, '?')}")
            out.append("  ".join(parts))
        return out


# -- Dice of a backend over model-grid pairs --------------------------------------------------------
def mean_dice(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray], classes: int = 1) -> float:
    """Mean per-image Dice over images with a non-empty ground truth (sonoseg.evaluate convention)."""
    from sonoseg.metrics.segmentation import segmentation_metrics

    vals = []
    for p, g in zip(preds, gts):
        m = segmentation_metrics(p, np.asarray(g), classes=classes, backend="scipy")  # Dice only: cheap HD
        vals.append(m["dice"] if classes == 1 else m["macro"]["dice"])
    vals = np.asarray(vals, dtype=float)
    return float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")


def mask_agreement(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    """Pooled Dice between two sets of foreground masks (1.0 = identical predictions)."""
    inter = sum(int(np.count_nonzero((x > 0) & (y > 0))) for x, y in zip(a, b))
    total = sum(int(np.count_nonzero(x > 0)) + int(np.count_nonzero(y > 0)) for x, y in zip(a, b))
    return 1.0 if total == 0 else 2.0 * inter / total


# -- dataset helpers (CLI) ----------------------------------------------------------------------------
def subset_indices(total: int, n: int, seed: int = 0) -> list[int]:
    """The seeded, sorted pick of ``n`` of ``total`` items that ``split_grids(n=...)`` makes (all if fewer)."""
    if n >= total:
        return list(range(total))
    return [int(i) for i in np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))]


def split_grids(dataset: str | Path, split_file: Optional[str | Path], split: Optional[str], cfg,
                n: Optional[int] = None, seed: int = 0,
                cache_dir: Optional[str | Path] = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image grid float32 HxW, mask grid uint8/int64 HxW) pairs of one split, preprocessed exactly as
    in training (same SegmentationDataset arrays and cache, no augmentation).

    ``split_file`` None: every image with a mask (an external test set such as STU has no split).
    ``n``: a seeded random subset of that size (calibration uses 64 training images by default).
    ``cache_dir``: default = the trainer's (``sonoseg.data.cache.preprocessed_cache_dir``).
    """
    from sonoseg.data import SegmentationDataset, discover_dataset, read_split_csv

    chosen = [s for s in discover_dataset(dataset) if s.mask_path is not None]
    if split_file is not None:
        assignment = read_split_csv(split_file)
        chosen = [s for s in chosen if assignment.get(s.stem) == split]
    if not chosen:
        where = f"split {split!r} of {split_file}" if split_file is not None else "it"
        raise ConfigError(f"{dataset}: no images with masks in {where}")
    if n is not None:
        chosen = [chosen[i] for i in subset_indices(len(chosen), n, seed)]
    if cache_dir is None:
        from sonoseg.data.cache import preprocessed_cache_dir

        cache_dir = preprocessed_cache_dir(cfg.data.cache_dir)
    ds = SegmentationDataset(chosen, cfg.preprocess, cache_dir=cache_dir, classes=cfg.model.classes)
    out = []
    for i in range(len(ds)):
        image, mask = ds.arrays(i)
        labels = (mask > 0).astype(np.uint8) if cfg.model.classes == 1 else mask.astype(np.int64)
        out.append((np.asarray(image, np.float32), labels))
    return out


# -- orchestration -------------------------------------------------------------------------------------
def _qat_reference(model, cfg, calib_images, images, threads, log):
    """Masks and class probabilities of the model as quantisation-aware training validated it: PyTorch with
    the int8 simulation (sonoseg.runtime.qat), its input ranges calibrated on the exporter's calibration
    images. A QAT model's int8 build is checked against this, not against its plain fp32 forward, which
    was never the validated model."""
    import copy

    from sonoseg.runtime.backends import create_backend
    from sonoseg.runtime.qat import attach_from_config

    sim = copy.deepcopy(model).cpu().eval()
    handle = attach_from_config(sim, cfg, "cpu")
    handle.calibrate(sim, calib_images, cfg.model.in_channels)
    log(f"QAT model: int8 checked against the training's int8 simulation ({handle.summary()})")
    be = create_backend("torch", sim, threads=threads, config=cfg)
    try:
        return predict_masks(be.run, images, cfg.model.in_channels), predict_class_probs(be.run_all, images,
                                                                                         cfg.model.in_channels)
    finally:
        be.close()


def export_model(
    checkpoint,
    options: Optional[ExportOptions] = None,
    *,
    calib_images: Optional[Sequence[np.ndarray]] = None,
    val_pairs: Optional[Sequence[tuple[np.ndarray, np.ndarray]]] = None,
    config=None,
    log: Callable[[str], None] = lambda s: None,
    **legacy,
) -> ExportReport:
    """Export ``checkpoint`` (path or nn.Module + ``config``) as ``options`` say (:class:`ExportOptions`).

    ``calib_images``: model-grid training images for int8 calibration (required for "onnx-int8").
    ``val_pairs``: (image grid, mask grid) validation pairs; required for "onnx-int8" (its Dice gate)
    and used for every format when given. A format is not written, and :class:`ExportRefused` is
    raised after the accepted formats are written, when its Dice drops by more than ``tolerance``
    or its masks agree with PyTorch's (per-image Dice, :func:`per_image_agreement`) at a mean below
    ``min_agreement`` or worst below ``min_worst_agreement``: a mean Dice can hold while single
    images change badly. The old keywords (``formats=``, ``tolerance=`` ...) and a positional
    ``out_dir`` still work this release, with a DeprecationWarning.
    """
    from sonoseg.runtime.backends import load_torch_model

    t0 = time.perf_counter()
    o = options_with_legacy(ExportOptions, options, legacy, "export_model", positional="out_dir")
    if "onnx-int8" in o.formats:
        if not calib_images:
            raise ConfigError("onnx-int8 needs calibration images from the training split (calib_images)")
        if not val_pairs:
            raise ConfigError("onnx-int8 needs validation images: its masks are compared with PyTorch's "
                              "before it is written (val_pairs)")
    model, cfg = load_torch_model(checkpoint)
    cfg = config or cfg
    if cfg is None:
        raise ConfigError("the model carries no SonosegConfig; pass config= (preprocessing must travel with it)")
    out_dir = Path(o.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    src_name = str(checkpoint) if isinstance(checkpoint, (str, Path)) else type(checkpoint).__name__
    report = ExportReport(src_name, out_dir, o.formats, o.tolerance, n_val=len(val_pairs or ()),
                          n_calib=len(calib_images or ()), min_agreement=o.min_agreement,
                          min_worst_agreement=o.min_worst_agreement)
    staging = Path(tempfile.mkdtemp(prefix=".sonoseg-export-", dir=out_dir))
    try:
        staged = _build_formats(model, cfg, o, staging, calib_images, report, log)
        if val_pairs:
            _validate_formats(model, cfg, o, staged, val_pairs, calib_images, report, log)
        for f, p in staged.items():
            if f in report.refused:
                continue
            final = out_dir / p.name
            p.replace(final)
            report.files[f] = str(final)
        report.seconds = time.perf_counter() - t0
        (out_dir / REPORT_NAME).write_text(json.dumps(report.to_dict(), indent=2, default=str))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if report.refused:
        f = min(report.refused, key=lambda k: report.agreement_mean[k])  # the worst one explains the refusal
        names = ", ".join(report.refused)
        dice = f" (Dice {report.dice[f]:.4f} vs PyTorch {report.dice['torch']:.4f})" if f in report.dice else ""
        raise ExportRefused(f"{names} model{'s' if len(report.refused) > 1 else ''} not written: {f} "
                            f"{report.refused[f]}{dice}", report)
    return report


def _build_formats(model, cfg, o: ExportOptions, staging: Path, calib_images, report: ExportReport,
                   log) -> dict[str, Path]:
    """Every requested format written into ``staging`` (fp32 ONNX also when only int8 is asked: int8 is built
    from it); format -> its staged file."""
    staged: dict[str, Path] = {}
    onnx_path = staging / FILE_NAMES["onnx"].format(stem=o.stem)
    if "onnx" in o.formats or "onnx-int8" in o.formats:
        log("exporting ONNX (fp32)")
        res = export_onnx(model, onnx_path, OnnxOptions(opset=o.opset, exporter=o.exporter), config=cfg)
        report.details["onnx"] = res.to_dict()
        if "onnx" in o.formats:
            staged["onnx"] = res.path
    if "onnx-int8" in o.formats:
        from sonoseg.runtime.quantize import default_scheme

        scheme = o.scheme or default_scheme()
        log(f"quantising int8 (static QDQ, scheme {scheme}, {len(calib_images)} calibration images)")
        q = quantize_static_int8(onnx_path, staging / FILE_NAMES["onnx-int8"].format(stem=o.stem), calib_images,
                                 scheme=scheme, calibrate_method=o.calibrate_method)
        report.details["onnx-int8"] = q.to_dict()
        staged["onnx-int8"] = q.path
    if "torchscript" in o.formats:
        log("exporting TorchScript")
        ts = export_torchscript(model, staging / FILE_NAMES["torchscript"].format(stem=o.stem), config=cfg)
        report.details["torchscript"] = ts.to_dict()
        staged["torchscript"] = ts.path
    return staged


def _validate_formats(model, cfg, o: ExportOptions, staged: dict[str, Path], val_pairs, calib_images,
                      report: ExportReport, log) -> None:
    """Each staged format against PyTorch on the validation pairs (against the int8 simulation for a QAT model's
    int8 build): Dice, mask agreement (all frames and lesion frames), class probabilities; ``report.refused``
    names the formats that fail the gate."""
    from sonoseg.runtime.backends import create_backend

    images = [p[0] for p in val_pairs]
    has_gt = all(p[1] is not None for p in val_pairs)  # else: agreement with PyTorch only
    gts = [np.asarray(p[1]) for p in val_pairs] if has_gt else []
    k, ch = cfg.model.classes, cfg.model.in_channels
    log(f"validating on {len(images)} images" + ("" if has_gt else " (no ground truth: agreement only)"))
    ref_be = create_backend("torch", model, threads=o.threads, config=cfg)
    ref_masks = predict_masks(ref_be.run, images, ch)
    ref_cls = predict_class_probs(ref_be.run_all, images, ch)
    int8_ref = _qat_reference(model, cfg, calib_images, images, o.threads, log) \
        if "onnx-int8" in staged and cfg.train.qat.enabled else None
    if has_gt:
        report.dice["torch"] = mean_dice(ref_masks, gts, k)
    lesion = [i for i, g in enumerate(gts) if np.any(g)]  # issue 22's measure: the frames with a lesion
    for f, p in staged.items():
        be = create_backend(BACKEND_OF[f], p, threads=o.threads)
        masks = predict_masks(be.run, images, ch)
        whose = "PyTorch's"
        if f == "onnx-int8" and int8_ref is not None:  # a QAT model: int8 is what was validated
            plain = per_image_agreement(ref_masks, masks)
            report.details[f]["reference"] = "pytorch with the int8 simulation of training (train.qat)"
            report.details[f]["agreement_with_fp32"] = {"mean": float(plain.mean()), "worst": float(plain.min())}
            ref_masks_f, ref_cls_f, whose = int8_ref[0], int8_ref[1], "the int8 simulation's"
        else:
            ref_masks_f, ref_cls_f = ref_masks, ref_cls
        if ref_cls_f is not None:
            cls = predict_class_probs(be.run_all, images, ch)
            report.class_prob_diff[f] = float(np.abs(cls - ref_cls_f).max()) if cls is not None else float("inf")
            report.class_agreement[f] = float(np.mean(cls.argmax(1) == ref_cls_f.argmax(1))) if cls is not None else 0.0
        be.close()
        if has_gt:
            report.dice[f] = mean_dice(masks, gts, k)
            report.dice_delta[f] = report.dice[f] - report.dice["torch"]
        report.agreement[f] = mask_agreement(ref_masks_f, masks)
        per = per_image_agreement(ref_masks_f, masks)
        report.agreement_mean[f], report.agreement_worst[f] = float(per.mean()), float(per.min())
        if lesion:
            report.details.setdefault(f, {})["agreement_lesion_frames"] = {
                "n": len(lesion), "mean": float(per[lesion].mean()), "worst": float(per[lesion].min())}
        why = _refusal(report, f, whose, o)
        if why:
            report.refused[f] = why


def _refusal(report: ExportReport, f: str, whose: str, o: ExportOptions) -> Optional[str]:
    """Why format ``f`` is not written (Dice drop over the tolerance, mean or worst agreement under its bar)."""
    drop = round(-report.dice_delta.get(f, 0.0), 6) + 0.0  # no "-0.0000" in messages
    if not drop <= o.tolerance:  # also refuses NaN
        return f"Dice drop {drop:.4f} > tolerance {o.tolerance:.4f}"
    if not report.agreement_mean[f] >= o.min_agreement:
        return f"masks agree with {whose} at mean Dice {report.agreement_mean[f]:.4f} < {o.min_agreement:.4f}"
    if not report.agreement_worst[f] >= o.min_worst_agreement:
        return (f"masks agree with {whose} at worst-image Dice {report.agreement_worst[f]:.4f} "
                f"< {o.min_worst_agreement:.4f}")
    return None


__all__ = [
    "ExportError", "ExportOptions", "ExportRefused", "ExportReport", "FORMATS", "OnnxOptions", "export_model",
    "export_onnx", "export_torchscript", "load_torchscript", "mean_dice", "per_image_agreement", "predict_masks", "quantize_dynamic_int8",
    "quantize_static_int8", "read_onnx_config", "split_grids", "subset_indices",
]  # fmt: skip
