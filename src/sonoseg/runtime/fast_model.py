"""The fast path without training data: ONNX (and int8) versions of a checkpoint, built on first
use on *this* CPU, checked against PyTorch, and cached.

Why build instead of ship: the int8 scheme that is exact depends on the CPU (VNNI or not, see
:mod:`sonoseg.runtime.quantize`), and an fp32 ONNX file is cheap to make (seconds). The package ships
a calibration set of 100 small training-split breast-ultrasound frames (``assets/calibration``);
four fifths calibrate the int8 model, the rest check it: the int8 model is used only when its
masks agree with PyTorch's (per-image Dice, mean >= ``MIN_AGREEMENT``, worst >= ``MIN_WORST``),
otherwise the fp32 ONNX model is. The files and the measured agreement are cached (keyed by the
checkpoint's content, the scheme and the onnxruntime version); the decision is made from the cached
figures on every load and reported by the predictor.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from sonoseg.errors import SonosegError
from sonoseg.runtime.calibration import calibration_grids

MIN_AGREEMENT = 0.97
MIN_WORST = 0.5
MIN_CLASS_AGREEMENT = 0.95  # models with a class head: share of check frames where int8 names the same class


@dataclass
class FastModel:
    kind: str  # "onnx-int8" | "onnx"
    path: Path  # the file to load
    fp32_path: Path
    scheme: Optional[str] = None  # int8 scheme tried on this CPU
    agreement_mean: Optional[float] = None  # int8 masks vs PyTorch masks on the check frames
    agreement_worst: Optional[float] = None
    note: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"], d["fp32_path"] = str(self.path), str(self.fp32_path)
        return d


# Bumped whenever the way the files are built changes (2: TF pads folded into convolutions), so a
# cache filled by an older sonoseg is rebuilt instead of reused (3: stacked sums written as Adds).
BUILD_RECIPE = "3"


def _digest(path: Path) -> str:
    h = hashlib.sha256(f"sonoseg-fast-model-{BUILD_RECIPE}\n".encode())
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:20]


def cache_folder(checkpoint: Path, cache_dir: Optional[Path] = None) -> Path:
    from sonoseg.data.cache import default_cache_dir

    return Path(cache_dir or default_cache_dir()) / "models" / _digest(checkpoint)


def _atomic_json(path: Path, obj: dict) -> None:
    from sonoseg.data.cache import atomic_write_json

    atomic_write_json(path, obj)


def build_fast_model(checkpoint: str | Path, *, quantize: bool = True, cache_dir: Optional[Path] = None,
                     threads: int = 1, log: Callable[[str], None] = lambda s: None) -> FastModel:
    """ONNX files for ``checkpoint`` in the cache (built once per CPU scheme); returns the one to use.

    ``quantize=False``: fp32 ONNX only (exact to ~1e-4 logits, 2-4x faster than eager PyTorch).
    int8 schemes are tried in :func:`int8_schemes_to_try` order; the first that passes the check is used."""
    from sonoseg.runtime.onnx_export import export_onnx
    from sonoseg.runtime.backends import load_torch_model

    checkpoint = Path(checkpoint)
    folder = cache_folder(checkpoint, cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    fp32 = folder / "model.onnx"
    loaded: list = []

    def load():  # the PyTorch model, read at most once however many files are built
        if not loaded:
            loaded.extend(load_torch_model(checkpoint))
        return loaded

    if not fp32.is_file():
        log("building the ONNX model for this machine (once)")
        model, cfg = load()
        tmp = folder / f".model.{os.getpid()}.onnx"
        try:
            export_onnx(model, tmp, config=cfg)
            tmp.replace(fp32)
        finally:
            tmp.unlink(missing_ok=True)
    if not quantize:
        return FastModel("onnx", fp32, fp32, note="fp32 ONNX")
    schemes = int8_schemes_to_try()
    first = None
    for scheme in schemes:
        rec, int8 = _int8_record(folder, fp32, load, scheme, threads, log)
        fm = _decide(rec, int8, fp32, scheme)
        if fm.kind == "onnx-int8":
            if scheme != schemes[0]:
                fm.note += f" (the CPU's default scheme {schemes[0]} failed the check)"
            return fm
        first = first or fm
    return first


def int8_schemes_to_try() -> list[str]:
    """The CPU's default scheme first; where that is not u8u8, u8u8 next (it needs no VNNI and keeps
    full-range weights: EfficientNet-Lite's int8 masks agree with fp32 only with it on AVX2 CPUs).
    ``$SONOSEG_INT8_SCHEME`` pins one scheme."""
    from sonoseg.runtime.quantize import SCHEME_ENV, default_scheme

    first = default_scheme()
    if os.environ.get(SCHEME_ENV, "").strip() or first == "u8u8":
        return [first]
    return [first, "u8u8"]


def _int8_record(folder: Path, fp32: Path, load, scheme: str, threads: int, log) -> tuple[dict, Path]:
    """The cached agreement record of ``scheme`` (built and checked once per scheme and onnxruntime);
    ``load()`` gives the PyTorch (model, config) when a build is needed."""
    import onnxruntime

    record_path = folder / f"int8-{scheme}-ort{onnxruntime.__version__}.json"
    int8 = folder / f"model.int8-{scheme}.onnx"
    if record_path.is_file() and (int8.is_file() or "error" in json.loads(record_path.read_text())):
        return json.loads(record_path.read_text()), int8
    log(f"building and checking the int8 model for this CPU (scheme {scheme}, once)")
    model, cfg = load()
    tmp = folder / f".int8.{os.getpid()}.onnx"
    try:
        rec = _quantize_and_check(fp32, tmp, model, cfg, scheme, threads)
        if "error" not in rec:
            tmp.replace(int8)
    finally:
        tmp.unlink(missing_ok=True)
    _atomic_json(record_path, rec)
    return rec, int8


def _decide(rec: dict, int8: Path, fp32: Path, scheme: str) -> FastModel:
    if "error" in rec:
        return FastModel("onnx", fp32, fp32, scheme, note=f"fp32 ONNX (int8 {scheme} failed: {rec['error']})")
    figures = f"int8 {scheme} masks agree with fp32 at mean {rec['agreement_mean']:.3f}, " \
              f"worst {rec['agreement_worst']:.3f} on {rec['n_check']} check frames"
    if "class_agreement" in rec:
        figures += f"; same class on {rec['class_agreement']:.1%}"
    if (rec["agreement_mean"] >= MIN_AGREEMENT and rec["agreement_worst"] >= MIN_WORST
            and rec.get("class_agreement", 1.0) >= MIN_CLASS_AGREEMENT):
        return FastModel("onnx-int8", int8, fp32, scheme, rec["agreement_mean"], rec["agreement_worst"], figures)
    return FastModel("onnx", fp32, fp32, scheme, rec["agreement_mean"], rec["agreement_worst"],
                     f"fp32 ONNX ({figures}: below {MIN_AGREEMENT}/{MIN_WORST}"
                     + (f"/{MIN_CLASS_AGREEMENT} same class" if "class_agreement" in rec else "") + ")")


def _quantize_and_check(fp32: Path, dst: Path, model, cfg, scheme: str, threads: int) -> dict:
    """Quantise on half the shipped frames, compare masks with PyTorch's on the other half."""
    from sonoseg.runtime.agreement import per_image_agreement, predict_masks
    from sonoseg.runtime.onnx_export import ExportError
    from sonoseg.runtime.quantize import quantize_static_int8
    from sonoseg.runtime.backends import create_backend

    calib, check = calibration_grids(cfg)
    try:
        quantize_static_int8(fp32, dst, calib, scheme=scheme)
    except ExportError as exc:
        return {"scheme": scheme, "error": str(exc).splitlines()[0][:200]}
    ch = cfg.model.in_channels
    ref_be = create_backend("torch", model, threads=threads, config=cfg)
    ref = predict_masks(ref_be.run, check, ch)
    q = create_backend("onnx", dst, threads=threads)
    per = per_image_agreement(ref, predict_masks(q.run, check, ch))
    rec = {"scheme": scheme, "agreement_mean": float(per.mean()), "agreement_worst": float(per.min()),
           "n_check": len(check), "n_calibration": len(calib)}
    from sonoseg.runtime.agreement import predict_class_probs

    ref_cls = predict_class_probs(ref_be.run_all, check, ch)
    if ref_cls is not None:  # a class head: the int8 model must name the same class
        cls = predict_class_probs(q.run_all, check, ch)
        rec["class_agreement"] = float(np.mean(cls.argmax(1) == ref_cls.argmax(1)))
        rec["class_prob_max_diff"] = float(np.abs(cls - ref_cls).max())
    q.close()
    return rec
