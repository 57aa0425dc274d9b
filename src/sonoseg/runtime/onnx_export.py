"""PyTorch -> ONNX, verified against PyTorch, with the SonosegConfig embedded in the file.

Why the classic exporter first: ``torch.onnx.export(dynamo=False)`` (TorchScript tracer) handles
plain conv nets (smp encoders, the classic U-Net, MONAI UNet) robustly and keeps the shape ops of
:class:`sonoseg.models.padding.PadToMultiple`, so batch, height and width stay dynamic. The
``torch.export``-based exporter (``dynamo=True``, needs onnxscript) is the fallback and can be asked
for explicitly.

An exported file is self-contained for ``sonoseg predict``: ``metadata_props["sonoseg_config"]``
holds the full SonosegConfig JSON (preprocessing + model section), so inference preprocesses
exactly like training without the checkpoint.

Verification: the ONNX model is run in onnxruntime on a random input, a speckle phantom input
(real-like statistics) and, when exported dynamic, a batch of 2 at a different height/width;
the max abs difference of the logits must stay within ``atol * max(1, max|logits|)``. If the
dynamic-size check fails the model is re-exported with fixed height/width (dynamic batch only).
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from sonoseg._compat.legacy_kwargs import options_with_legacy
from sonoseg.errors import SonosegError
from sonoseg.runtime.onnx_graph import describe, simplify_file

CONFIG_KEY = "sonoseg_config"  # full SonosegConfig JSON
PREPROCESS_KEY = "sonoseg_preprocess"  # convenience copy of the preprocess section
MODEL_KEY = "sonoseg_model"  # convenience copy of the model section
FORMAT_KEY = "sonoseg_format"
QUANT_KEY = "sonoseg_quantization"  # set by export.quantize on int8 files
FORMAT_VALUE = "sonoseg-onnx/1"
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
CLASS_OUTPUT_NAME = "class_logits"  # second output of models with a class head (N x K)
DEFAULT_OPSET = 17


class ExportError(SonosegError):
    """An export could not be produced or did not reproduce the PyTorch model."""


@dataclass(kw_only=True)
class VerifiedExport:
    """What every exported file reports beside its own fields: how it matched eager PyTorch
    (:func:`compare_with_eager`) and how long the export took. Shared by ONNX and TorchScript results."""

    max_abs_diff: dict[str, float] = field(default_factory=dict)  # check name -> max |exported - torch|
    tolerance: float = 0.0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(d["path"])
        return d


@dataclass
class OnnxExportResult(VerifiedExport):
    path: Path
    exporter: str  # "classic" | "dynamo"
    opset: int
    dynamic_batch: bool
    dynamic_spatial: bool
    input_size: tuple[int, int]


# -- inputs used for verification ------------------------------------------------------------------
def phantom_grid(size: tuple[int, int], seed: int = 0, normalize: str = "minmax") -> np.ndarray:
    """A real-like model input: speckled tissue, a darker elliptical lesion, black letterbox band.

    Used to verify exports on inputs with ultrasound-like statistics (not only white noise)."""
    import cv2

    h, w = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    tissue = 0.45 + 0.2 * np.sin(yy / max(h, 1) * 3.0) * np.cos(xx / max(w, 1) * 2.0)
    cy, cx = h * rng.uniform(0.35, 0.65), w * rng.uniform(0.35, 0.65)
    ry, rx = h * rng.uniform(0.1, 0.2), w * rng.uniform(0.1, 0.25)
    lesion = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    tissue[lesion] *= 0.25
    speckle = rng.rayleigh(1.0, size=(h, w)).astype(np.float32)
    img = cv2.GaussianBlur(tissue * speckle, (3, 3), 0)
    band = max(1, h // 10)
    img[:band] = 0.0
    img[-band:] = 0.0
    img = (img - img.min()) / max(float(img.max() - img.min()), 1e-6)
    if normalize == "zscore":
        img = (img - img.mean()) / max(float(img.std()), 1e-6)
    return img.astype(np.float32)


def _input_spec(model, config, input_size, in_channels) -> tuple[tuple[int, int], int, str]:
    if input_size is None:
        input_size = tuple(config.preprocess.size) if config is not None else (256, 256)
    if in_channels is None:
        in_channels = config.model.in_channels if config is not None else _guess_in_channels(model)
    normalize = config.preprocess.normalize if config is not None else "minmax"
    return (int(input_size[0]), int(input_size[1])), int(in_channels), normalize


def _guess_in_channels(model) -> int:
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            return int(m.in_channels)
    return 1


def verification_inputs(size: tuple[int, int], in_channels: int, normalize: str = "minmax",
                        seed: int = 0) -> dict[str, np.ndarray]:
    """Named N x C x H x W float32 inputs at the nominal size (random + phantom)."""
    rng = np.random.default_rng(seed)
    h, w = size
    rand = rng.standard_normal((1, in_channels, h, w)) if normalize == "zscore" else rng.random((1, in_channels, h, w))
    ph = np.repeat(phantom_grid(size, seed, normalize)[None, None], in_channels, axis=1)
    return {"random": rand.astype(np.float32), "phantom": np.ascontiguousarray(ph)}


def _other_size_candidates(size: tuple[int, int]) -> list[tuple[int, int]]:
    """First: an odd size (exercises PadToMultiple); second: multiples of 32 for unwrapped nets."""
    h, w = size
    return [(h + 24, max(16, w - 40)), (h + 32, max(32, w - 32))]


def torch_outputs(model, x: np.ndarray) -> list[np.ndarray]:
    """Every output of ``model`` on ``x``: [mask logits] or [mask logits, class logits]."""
    import torch

    with torch.inference_mode():
        y = model(torch.from_numpy(np.ascontiguousarray(x)))
    ys = list(y) if isinstance(y, (tuple, list)) else [y]
    return [t.float().numpy() for t in ys]


def torch_forward(model, x: np.ndarray) -> np.ndarray:
    """Mask logits of ``model`` on ``x`` (a class head's output is dropped)."""
    return torch_outputs(model, x)[0]


def has_class_head(model) -> bool:
    spec = getattr(model, "spec", None) or {}
    if spec.get("classification"):
        return True
    from sonoseg.models.padding import unwrap

    return getattr(unwrap(model), "classification_head", None) is not None


def output_names(model) -> list[str]:
    return [OUTPUT_NAME, CLASS_OUTPUT_NAME] if has_class_head(model) else [OUTPUT_NAME]


def ort_session(path: str | Path, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def max_abs_diff(a, b) -> float:
    """Max |a - b| over arrays or equally long lists of arrays (inf on any shape/length mismatch)."""
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        a = list(a) if isinstance(a, (list, tuple)) else [a]
        b = list(b) if isinstance(b, (list, tuple)) else [b]
        if len(a) != len(b):
            return float("inf")
        return max((max_abs_diff(x, y) for x, y in zip(a, b)), default=0.0)
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


# -- exporters --------------------------------------------------------------------------------------
def _export_classic(model, x, path: Path, opset: int, dyn_batch: bool, dyn_spatial: bool) -> None:
    import torch

    axes: dict[int, str] = {}
    if dyn_batch:
        axes[0] = "batch"
    if dyn_spatial:
        axes.update({2: "height", 3: "width"})
    names = output_names(model)
    dyn = {INPUT_NAME: axes, OUTPUT_NAME: axes} if axes else None
    if dyn and len(names) > 1:
        dyn[CLASS_OUTPUT_NAME] = {0: "batch"} if dyn_batch else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (x,), str(path), dynamo=False, opset_version=opset, do_constant_folding=True,
            input_names=[INPUT_NAME], output_names=names, dynamic_axes=dyn,
        )


def _export_dynamo(model, x, path: Path, opset: int, dyn_batch: bool, dyn_spatial: bool) -> None:
    import torch
    from torch.export import Dim

    spec: dict[int, object] = {}
    if dyn_batch:
        spec[0] = Dim.DYNAMIC
    if dyn_spatial:
        spec.update({2: Dim.DYNAMIC, 3: Dim.DYNAMIC})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(
            model, (x,), dynamo=True, opset_version=max(opset, 18), input_names=[INPUT_NAME],
            output_names=output_names(model), dynamic_shapes=(spec,) if spec else None, optimize=True,
            verbose=False,
        )
        prog.save(str(path), external_data=False)


def embed_metadata(path: str | Path, props: dict[str, str]) -> None:
    """Add/replace ``metadata_props`` entries of an ONNX file in place."""
    import onnx

    m = onnx.load(str(path))
    existing = {p.key: p.value for p in m.metadata_props}
    existing.update({k: str(v) for k, v in props.items()})
    del m.metadata_props[:]
    for k, v in existing.items():
        entry = m.metadata_props.add()
        entry.key, entry.value = k, v
    if not m.producer_name or m.producer_name == "pytorch":
        m.doc_string = "sonoseg segmentation model; preprocessing in metadata_props['sonoseg_config']"
    onnx.save(m, str(path))


def config_metadata(config) -> dict[str, str]:
    if config is None:
        return {FORMAT_KEY: FORMAT_VALUE}
    from sonoseg import __version__

    return {
        FORMAT_KEY: FORMAT_VALUE,
        CONFIG_KEY: config.model_dump_json(),
        PREPROCESS_KEY: config.preprocess.model_dump_json(),
        MODEL_KEY: config.model.model_dump_json(),
        "sonoseg_version": __version__,
    }


def read_metadata(path: str | Path) -> dict[str, str]:
    """``metadata_props`` of an ONNX file (reads the protobuf; no session is created)."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in m.metadata_props}


def read_onnx_config(path: str | Path):
    """The SonosegConfig embedded by :func:`export_onnx`, or None for a foreign ONNX file."""
    from sonoseg.config import SonosegConfig

    raw = read_metadata(path).get(CONFIG_KEY)
    return SonosegConfig.model_validate_json(raw) if raw else None


def compare_with_eager(model, run, checks: dict[str, np.ndarray], size, in_channels: int, atol: float,
                       spatial: bool = True, spatial_batch: int = 2, seed: int = 0):
    """Shared check of an exported model against eager PyTorch: ``run(x) -> logits`` (or the list of all
    outputs, class logits included) on each input of
    ``checks``, then (``spatial``) on the first other spatial size the eager model accepts.

    Returns (max |diff| per check, tolerance = atol * max(1, max |reference logit|), spatial_ok); a
    failing run at the other size (shapes baked into the graph) counts as a mismatch.
    """
    diffs: dict[str, float] = {}
    worst_ref = 1.0
    for name, x in checks.items():
        ref = torch_outputs(model, x)
        worst_ref = max(worst_ref, *(float(np.abs(r).max()) for r in ref))
        diffs[name] = max_abs_diff(run(x), ref)
    spatial_ok = not spatial
    if spatial:
        rng = np.random.default_rng(seed + 1)
        for hw in _other_size_candidates(size):
            x = rng.random((spatial_batch, in_channels, *hw)).astype(np.float32)
            try:
                ref = torch_outputs(model, x)
            except Exception:  # noqa: BLE001 - the PyTorch model itself cannot take this size
                continue
            worst_ref = max(worst_ref, *(float(np.abs(r).max()) for r in ref))
            try:
                out = run(x)
            except Exception:  # noqa: BLE001 - shapes were baked into the exported graph
                out = np.empty(0)
            diffs[f"size_{hw[0]}x{hw[1]}"] = d = max_abs_diff(out, ref)
            spatial_ok = d <= atol * worst_ref
            break
    return diffs, atol * worst_ref, spatial_ok


def _verify(model, path: Path, size, in_channels, normalize, dyn_batch, dyn_spatial, atol, seed=0):
    """ONNX file vs eager: returns (diffs, tolerance, spatial_ok)."""
    sess = ort_session(path)
    checks = dict(verification_inputs(size, in_channels, normalize, seed))
    if dyn_batch:
        checks["batch2"] = np.concatenate([checks["random"], checks["phantom"]], axis=0)
    return compare_with_eager(model, lambda x: sess.run(None, {INPUT_NAME: x}), checks, size, in_channels,
                              atol, spatial=dyn_spatial, spatial_batch=2 if dyn_batch else 1, seed=seed)


EXPORTERS = ("auto", "classic", "dynamo")


def check_onnx_settings(opset: int, exporter: str) -> None:
    """ExportError for an opset or exporter :func:`export_onnx` cannot honour."""
    if opset < 17:
        raise ExportError(f"opset {opset} < 17 is not supported (LayerNorm/Resize semantics)")
    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter {exporter!r} ({', '.join(EXPORTERS)})")


@dataclass(frozen=True, kw_only=True)
class OnnxOptions:
    """How one model becomes one ONNX file. ``input_size``/``in_channels`` default to the config's."""

    opset: int = DEFAULT_OPSET
    exporter: str = "auto"  # "auto" (classic, then dynamo on failure) | "classic" | "dynamo"
    dynamic: bool = True  # dynamic batch, height and width (fixed H/W when dynamic ones do not verify)
    verify: bool = True  # compare with eager PyTorch on random, phantom and (dynamic) batch-2 inputs
    atol: float = 1e-4  # allowed max |logit difference| x max(1, max |logit|)
    input_size: Optional[tuple[int, int]] = None
    in_channels: Optional[int] = None

    def __post_init__(self) -> None:
        check_onnx_settings(self.opset, self.exporter)


def export_onnx(model, path: str | Path, options: Optional[OnnxOptions] = None, *, config=None,
                **legacy) -> OnnxExportResult:
    """Export ``model`` (eval mode, CPU) to ``path``; returns what was exported and how well it matches.

    ``config``: the SonosegConfig embedded in the file (input size and channels come from it).
    Raises :class:`ExportError` when no exporter succeeds or outputs differ beyond tolerance. The old
    keywords (``opset=``, ``exporter=`` ...) still work this release, with a DeprecationWarning.
    """
    import torch

    o = options_with_legacy(OnnxOptions, options, legacy, "export_onnx")
    opset, exporter, dynamic, verify, atol = o.opset, o.exporter, o.dynamic, o.verify, o.atol
    t0 = time.perf_counter()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    size, in_channels, normalize = _input_spec(model, config, o.input_size, o.in_channels)
    x = torch.from_numpy(verification_inputs(size, in_channels, normalize)["phantom"])
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    order = {"auto": ["classic", "dynamo"], "classic": ["classic"], "dynamo": ["dynamo"]}[exporter]
    notes: list[str] = []
    errors: list[str] = []
    try:
        for name in order:
            fn = _export_classic if name == "classic" else _export_dynamo
            dyn_spatial = dynamic
            try:
                fn(model, x, tmp, opset, dynamic, dyn_spatial)
                notes += describe(simplify_file(tmp))  # exact rewrites (TF pads, stacked sums); verified below
                if not verify:
                    diffs, tol, ok = {}, 0.0, True
                else:
                    diffs, tol, ok = _verify(model, tmp, size, in_channels, normalize, dynamic, dyn_spatial, atol)
                    if dyn_spatial and not ok:
                        notes.append(f"{name}: dynamic height/width did not reproduce PyTorch; exported fixed "
                                     f"{size[0]}x{size[1]}")
                        dyn_spatial = False
                        fn(model, x, tmp, opset, dynamic, dyn_spatial)
                        simplify_file(tmp)
                        diffs, tol, ok = _verify(model, tmp, size, in_channels, normalize, dynamic, False, atol)
            except Exception as exc:  # noqa: BLE001 - try the next exporter, report all reasons
                errors.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                continue
            worst = max(diffs.values()) if diffs else 0.0
            if verify and worst > tol:
                errors.append(f"{name}: max abs diff {worst:.2e} > tolerance {tol:.2e}")
                continue
            if errors:
                notes.extend(f"fell back after {e}" for e in errors)
            embed_metadata(tmp, {**config_metadata(config), "sonoseg_exporter": name,
                                 "sonoseg_input_size": f"{size[0]}x{size[1]}",
                                 "sonoseg_dynamic_spatial": str(dyn_spatial).lower()})
            tmp.replace(path)
            return OnnxExportResult(path, name, opset if name == "classic" else max(opset, 18), dynamic,
                                    dyn_spatial, size, max_abs_diff=diffs, tolerance=tol,
                                    seconds=time.perf_counter() - t0, notes=notes)
        raise ExportError(f"{path}: ONNX export failed ({'; '.join(errors)})")
    finally:
        tmp.unlink(missing_ok=True)
