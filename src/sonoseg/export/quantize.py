"""int8 quantisation of an exported ONNX model with onnxruntime.quantization.

Default = **static** QDQ quantisation: per-channel symmetric int8 weights, asymmetric uint8
activations (U8S8), MinMax calibration on training images preprocessed exactly as in training.
Why these choices (measured on this project's x86 CPU, AVX-512 VNNI, ORT 1.31, FPN-mobilenet_v2
256x256, 1 thread): fp32 ~31-37 ms, static U8S8 ~20 ms, static S8S8 ~44 ms (ORT's x86 int8 GEMM
kernels are built for uint8 activations x int8 weights), **dynamic** int8 ~300 ms: dynamic
quantisation turns every Conv into ConvInteger + per-call activation range computation, and ORT
has no fast ConvInteger kernel, so it is ~8x *slower* than fp32 for conv nets. It is offered only
for the benchmark's comparison rows. ``reduce_range`` stays off: VNNI accumulates without the u8s8
saturation that older AVX2 cores suffer (ORT's own guidance).

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
from sonoseg.export.onnx_export import INPUT_NAME, QUANT_KEY, ExportError, embed_metadata, read_metadata

ACTIVATION_TYPES = ("quint8", "qint8")
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
            self._pos = 0

        def get_next(self):
            if self._pos >= len(self.images):
                return None
            chunk = [self.images[self._pos]]
            while (len(chunk) < self.batch_size and self._pos + len(chunk) < len(self.images)
                   and self.images[self._pos + len(chunk)].shape == chunk[0].shape):
                chunk.append(self.images[self._pos + len(chunk)])
            self._pos += len(chunk)
            return {self.input_name: np.ascontiguousarray(np.stack(chunk))}

        def rewind(self) -> None:
            self._pos = 0

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


def _model_input(path: Path) -> tuple[str, int]:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
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
            yield Path(td), pre, pre_process(fp32_path, pre)
        finally:
            os.chdir(old)


def quantize_static_int8(
    fp32_path: str | Path,
    out_path: str | Path,
    calib_images: Sequence[np.ndarray],
    *,
    activation_type: str = "quint8",
    per_channel: bool = True,
    calibrate_method: str = "minmax",
    reduce_range: bool = False,
    nodes_to_exclude: Sequence[str] = (),
    batch_size: int = 1,
) -> QuantizeResult:
    """Static QDQ int8 model from ``fp32_path`` calibrated on ``calib_images`` (model-grid images)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if activation_type not in ACTIVATION_TYPES:
        raise ConfigError(f"activation_type {activation_type!r} is not one of {', '.join(ACTIVATION_TYPES)}")
    if calibrate_method not in CALIBRATION_METHODS:
        raise ConfigError(f"calibrate_method {calibrate_method!r} is not one of {', '.join(CALIBRATION_METHODS)}")
    t0 = time.perf_counter()
    fp32_path, out_path = Path(fp32_path).resolve(), Path(out_path).resolve()
    input_name, channels = _model_input(fp32_path)
    reader = ImageCalibrationReader(calib_images, input_name, channels, batch_size)
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[calibrate_method]
    act = QuantType.QUInt8 if activation_type == "quint8" else QuantType.QInt8
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with _staging(fp32_path) as (td, pre, notes):
        tmp_out = td / "int8.onnx"
        try:
            with _quiet_root_logger():
                quantize_static(
                    str(pre), str(tmp_out), reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
                    reduce_range=reduce_range, activation_type=act, weight_type=QuantType.QInt8,
                    calibrate_method=method, nodes_to_exclude=list(nodes_to_exclude) or None,
                    extra_options={"WeightSymmetric": True, "ActivationSymmetric": activation_type == "qint8"},
                )
        except Exception as exc:  # noqa: BLE001 - surface as one line
            raise ExportError(f"{fp32_path}: static int8 quantisation failed ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
        quant = {"mode": "static", "format": "QDQ", "activation": activation_type, "weight": "qint8",
                 "per_channel": per_channel, "calibration": calibrate_method, "n_calibration": len(reader.images)}
        _carry_metadata(fp32_path, tmp_out, quant)
        tmp_out.replace(out_path)
    return QuantizeResult(out_path, "static", activation_type, "qint8", per_channel, calibrate_method,
                          len(reader.images), time.perf_counter() - t0, notes)


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
