"""int8 quantisation of an exported ONNX model with onnxruntime.quantization.

Default = **static** QDQ quantisation: per-channel int8 weights, asymmetric uint8 activations,
MinMax calibration on images preprocessed exactly as in training. The *scheme* depends on the CPU
(recorded in the model file, see :data:`SCHEMES`):

* ``u8s8`` (full-range int8 weights): exact accumulation only with VNNI (AVX512-VNNI, AVX-VNNI,
  AMX). Fastest there.
* ``u8s8-reduced`` (7-bit weights, ``reduce_range``): without VNNI, onnxruntime's AVX2 / AVX-512F
  kernel sums pairs of u8*s8 products in int16 (``vpmaddubsw``), which saturates with full-range
  weights; 7-bit weights cannot saturate. onnxruntime documents this remedy. Measured on an AMD
  EPYC (AVX2, no VNNI) with the shipped model on the 97 validation images: per-image agreement of
  int8 masks with fp32 masks mean 0.923, worst 0.05 with ``u8s8``, 0.973 / 0.81 with
  ``u8s8-reduced``. Default on CPUs without VNNI.
* ``u8u8`` (uint8 weights): also saturation-free everywhere, but 1.5-2x slower than the others
  on AVX2; offered for comparison.

``s8s8`` (int8 activations) is not offered: slower everywhere and, on AVX2, worse than ``u8s8``.
**Dynamic** int8 turns every Conv into ConvInteger (no fast kernel in onnxruntime, ~8x slower than
fp32 for conv nets); it exists only for the benchmark's comparison rows.

``quant_pre_process`` (ORT optimisation + shape inference) runs first as ORT recommends; its
symbolic shape inference cannot resolve the dynamic height/width through Resize, so it falls
back to ONNX shape inference only.
"""

from __future__ import annotations

import contextlib
import json
import os
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from sonoseg.errors import ConfigError
from sonoseg.runtime.onnx_export import INPUT_NAME, QUANT_KEY, ExportError, embed_metadata, read_metadata

# scheme -> quantize_static arguments, and the CPU's default: shared with the trainer's QAT (sonoseg.runtime.qat)
from sonoseg.system.int8_scheme import SCHEME_ENV, SCHEMES, default_scheme  # noqa: F401

ACTIVATION_TYPES = ("quint8", "qint8")


def scheme_of(info: Optional[dict]) -> Optional[str]:
    """The scheme of a quantisation record (files written before schemes existed: u8s8, full range)."""
    if not info or info.get("mode") != "static":
        return None
    if "scheme" in info:
        return info["scheme"]
    if info.get("activation", "quint8") != "quint8":
        return "s8s8"
    return "u8s8-reduced" if info.get("reduce_range") else "u8s8"


def scheme_warning(info: Optional[dict], cpu=None) -> Optional[str]:
    """Why an int8 file may disagree with fp32 on ``cpu`` (None when it is fine there)."""
    from sonoseg.system.cpu import cpu_info

    cpu = cpu or cpu_info()
    sch = scheme_of(info)
    if sch in ("u8s8", "s8s8") and not cpu.vnni:
        return (f"int8 scheme {sch} (full-range weights) is built for CPUs with VNNI; this CPU "
                f"({cpu.label()}) lacks it, so masks can differ from fp32: re-export here "
                f"(scheme u8s8-reduced) or use the fp32 'onnx' backend")
    return None
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


@dataclass
class QuantizeResult:
    path: Path
    mode: str  # "static" | "dynamic"
    activation_type: Optional[str]
    weight_type: str
    per_channel: bool
    calibration: Optional[str]
    n_calibration: int
    seconds: float
    notes: list[str] = field(default_factory=list)
    scheme: Optional[str] = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def _as_nchw(img: np.ndarray, in_channels: int) -> np.ndarray:
    a = np.asarray(img, dtype=np.float32)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ConfigError(f"calibration images must be HxW or CxHxW, got shape {a.shape}")
    if a.shape[0] == 1 and in_channels > 1:
        a = np.repeat(a, in_channels, axis=0)
    return a


def _calibration_reader_class():
    from onnxruntime.quantization import CalibrationDataReader

    class ImageCalibrationReader(CalibrationDataReader):
        """Feeds preprocessed model-grid images (HxW or CxHxW float32) one batch at a time."""

        def __init__(self, images: Sequence[np.ndarray], input_name: str = INPUT_NAME, in_channels: int = 1,
                     batch_size: int = 1):
            if not len(images):
                raise ConfigError("static int8 quantisation needs at least one calibration image")
            self.images = [_as_nchw(i, in_channels) for i in images]
            self.input_name = input_name
            self.batch_size = max(1, int(batch_size))
            self._pos, self._end = 0, len(self.images)

        def __len__(self) -> int:  # for onnxruntime's strided calibration (CalibStridedMinMax)
            return len(self.images)

        def set_range(self, start_index: int, end_index: int) -> None:
            self._pos, self._end = start_index, min(end_index, len(self.images))

        def get_next(self):
            if self._pos >= self._end:
                return None
            chunk = [self.images[self._pos]]
            while (len(chunk) < self.batch_size and self._pos + len(chunk) < self._end
                   and self.images[self._pos + len(chunk)].shape == chunk[0].shape):
                chunk.append(self.images[self._pos + len(chunk)])
            self._pos += len(chunk)
            return {self.input_name: np.ascontiguousarray(np.stack(chunk))}

        def rewind(self) -> None:
            self._pos, self._end = 0, len(self.images)

    return ImageCalibrationReader


def ImageCalibrationReader(images, input_name: str = INPUT_NAME, in_channels: int = 1, batch_size: int = 1):  # noqa: N802
    """CalibrationDataReader over a list of images (factory so onnxruntime is imported lazily)."""
    return _calibration_reader_class()(images, input_name, in_channels, batch_size)


@contextlib.contextmanager
def _quiet_root_logger():
    """onnxruntime.quantization logs benign per-tensor notes (e.g. 'Axis 1 is out-of-range for weight'
    for GroupNorm's 1-D scales, which it then quantises per tensor) through the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _model_input(m) -> tuple[str, int]:
    """Input name and channel count of a loaded ONNX model."""
    inp = m.graph.input[0]
    dims = inp.type.tensor_type.shape.dim
    channels = dims[1].dim_value if len(dims) > 1 and dims[1].dim_value > 0 else 1
    return inp.name, channels


def pre_process(src: Path, dst: Path) -> list[str]:
    """ORT's recommended pre-processing; returns notes on what had to be skipped."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    notes = []
    try:
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
    except Exception as exc:  # noqa: BLE001 - symbolic inference gives up on dynamic H/W through Resize
        notes.append(f"symbolic shape inference skipped ({type(exc).__name__}: {str(exc)[:80]})")
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
    return notes


def _simplify(path: Path) -> list[str]:
    """Exact rewrites (sonoseg.runtime.onnx_graph): TF-style pads become Conv pads and stacked sums
    become Adds, so neither runs in float between quantise/dequantise pairs (fp32 files exported by an
    older sonoseg get them too). ``path`` is already optimised by pre_process. Returns notes."""
    from sonoseg.runtime.onnx_graph import describe, simplify_file

    return describe(simplify_file(path, optimize=False))


def _carry_metadata(src: Path, dst: Path, quant: dict) -> None:
    meta = read_metadata(src)
    meta[QUANT_KEY] = json.dumps(quant)
    embed_metadata(dst, meta)


@contextlib.contextmanager
def _staging(fp32_path: Path):
    """A temporary working folder holding the pre-processed model: yields (folder, pre.onnx, notes).

    The process's working directory is that folder for the whole block: onnxruntime's quantisation
    tooling (C++ side, when it saves models it re-loaded with shape inference) drops ``<uuid>.data``
    external-data files into the *current* directory and never removes them. Paths passed in must be
    absolute.
    """
    old = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="sonoseg-q-") as td:
        os.chdir(td)
        try:
            pre = Path(td) / "pre.onnx"
            notes = pre_process(fp32_path, pre)
            notes += _simplify(pre)
            yield Path(td), pre, notes
        finally:
            os.chdir(old)


def _stride_option(n: int, method: str) -> dict:
    """MinMax ranges computed over chunks of at most 16 images and merged: calibration memory stays
    bounded (onnxruntime otherwise keeps every intermediate tensor of every image: ~4 GB for 128
    256x256 frames of the default model). ``CalibMaxIntermediateOutputs``, meant for the same, drops
    the chunks instead of merging them in onnxruntime 1.31; the strided mode needs a divisor of n."""
    if method != "minmax" or n <= 16:
        return {}
    return {"CalibStridedMinMax": max(d for d in range(1, 17) if n % d == 0)}


def _keep_float_nodes(m, path: Path, prefixes: Optional[Sequence[str]]) -> tuple[list[str], list[str]]:
    """(prefixes, node names) kept in fp32: ``prefixes`` default to the model config's
    ``model.int8_keep_float`` carried in the file; the names are the graph's compute nodes (Conv, Gemm,
    MatMul) starting with one of them. A prefix that matches nothing is an error (a renamed graph must
    not silently quantise everything)."""
    if prefixes is None:
        from sonoseg.config import SonosegConfig
        from sonoseg.runtime.onnx_export import CONFIG_KEY

        raw = {p.key: p.value for p in m.metadata_props}.get(CONFIG_KEY)
        try:
            prefixes = list(SonosegConfig.model_validate_json(raw).model.int8_keep_float) if raw else []
        except ValueError:  # a file without a valid config keeps nothing in fp32
            prefixes = []
    if not prefixes:
        return [], []
    names = [n.name for n in m.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    unmatched = [p for p in prefixes if not any(n.startswith(p) for n in names)]
    if unmatched:
        raise ConfigError(f"{path}: model.int8_keep_float prefix(es) {', '.join(unmatched)} match no "
                          "Conv/Gemm/MatMul node of the graph")
    return list(prefixes), [n for n in names if any(n.startswith(p) for p in prefixes)]


def quantize_static_int8(
    fp32_path: str | Path,
    out_path: str | Path,
    calib_images: Sequence[np.ndarray],
    *,
    scheme: Optional[str] = None,
    per_channel: bool = True,
    calibrate_method: str = "minmax",
    nodes_to_exclude: Sequence[str] = (),
    keep_float: Optional[Sequence[str]] = None,
    batch_size: int = 1,
) -> QuantizeResult:
    """Static QDQ int8 model from ``fp32_path`` calibrated on ``calib_images`` (model-grid images).

    ``scheme``: one of :data:`SCHEMES`; default :func:`default_scheme` for this CPU. The scheme and
    the CPU it was built on are recorded in the file's metadata.
    ``keep_float``: node-name prefixes left in fp32 (mixed precision); default: the model config's
    ``model.int8_keep_float`` carried in the fp32 file, so every caller honours the model's choice."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from sonoseg.system.cpu import cpu_info

    scheme = scheme or default_scheme()
    if scheme not in SCHEMES:
        raise ConfigError(f"int8 scheme {scheme!r} is not one of {', '.join(SCHEMES)}")
    activation_type, weight_type, reduce_range = (SCHEMES[scheme][k] for k in
                                                  ("activation_type", "weight_type", "reduce_range"))
    if calibrate_method not in CALIBRATION_METHODS:
        raise ConfigError(f"calibrate_method {calibrate_method!r} is not one of {', '.join(CALIBRATION_METHODS)}")
    t0 = time.perf_counter()
    fp32_path, out_path = Path(fp32_path).resolve(), Path(out_path).resolve()
    import onnx

    graph = onnx.load(str(fp32_path), load_external_data=False)  # read once: input, fp32 layers
    input_name, channels = _model_input(graph)
    keep_float, kept = _keep_float_nodes(graph, fp32_path, keep_float)
    del graph
    nodes_to_exclude = [*nodes_to_exclude, *kept]
    reader = ImageCalibrationReader(calib_images, input_name, channels, batch_size)
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[calibrate_method]
    act = QuantType.QUInt8 if activation_type == "quint8" else QuantType.QInt8
    weight_qtype = QuantType.QInt8 if weight_type == "qint8" else QuantType.QUInt8
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with _staging(fp32_path) as (td, pre, notes):
        tmp_out = td / "int8.onnx"
        try:
            with _quiet_root_logger():
                quantize_static(
                    str(pre), str(tmp_out), reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
                    reduce_range=reduce_range, activation_type=act, weight_type=weight_qtype,
                    calibrate_method=method, nodes_to_exclude=list(nodes_to_exclude) or None,
                    extra_options={"WeightSymmetric": weight_type == "qint8",
                                   "ActivationSymmetric": activation_type == "qint8",
                                   **_stride_option(len(reader.images), calibrate_method)},
                )
        except Exception as exc:  # noqa: BLE001 - surface as one line
            raise ExportError(f"{fp32_path}: static int8 quantisation failed ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
        quant = {"mode": "static", "format": "QDQ", "scheme": scheme, "activation": activation_type,
                 "weight": weight_type, "reduce_range": reduce_range, "per_channel": per_channel,
                 "calibration": calibrate_method, "n_calibration": len(reader.images),
                 "keep_float": list(keep_float), "n_float_nodes": len(kept),
                 "built_on": cpu_info().summary()}
        _carry_metadata(fp32_path, tmp_out, quant)
        tmp_out.replace(out_path)
    return QuantizeResult(out_path, "static", activation_type, weight_type, per_channel, calibrate_method,
                          len(reader.images), time.perf_counter() - t0, notes, scheme)


def quantize_dynamic_int8(fp32_path: str | Path, out_path: str | Path, *, per_channel: bool = True) -> QuantizeResult:
    """Dynamic int8 (weights int8, activations quantised per call). For benchmark comparison only:
    it is several times slower than fp32 for conv nets in onnxruntime (see module docstring)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    t0 = time.perf_counter()
    fp32_path, out_path = Path(fp32_path).resolve(), Path(out_path).resolve()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with _staging(fp32_path) as (td, pre, notes):
        tmp_out = td / "int8d.onnx"
        with _quiet_root_logger():
            quantize_dynamic(str(pre), str(tmp_out), weight_type=QuantType.QInt8, per_channel=per_channel)
        _carry_metadata(fp32_path, tmp_out, {"mode": "dynamic", "weight": "qint8", "per_channel": per_channel})
        tmp_out.replace(out_path)
    return QuantizeResult(out_path, "dynamic", None, "qint8", per_channel, None, 0, time.perf_counter() - t0, notes)


def quantization_info(path: str | Path) -> Optional[dict]:
    """The quantisation record written by this module, or — for foreign files — a guess from ops."""
    meta = read_metadata(path)
    if QUANT_KEY in meta:
        return json.loads(meta[QUANT_KEY])
    import onnx

    ops = {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}
    if ops & {"QuantizeLinear", "QLinearConv"}:
        return {"mode": "static"}
    if ops & {"ConvInteger", "DynamicQuantizeLinear", "MatMulInteger"}:
        return {"mode": "dynamic"}
    return None
