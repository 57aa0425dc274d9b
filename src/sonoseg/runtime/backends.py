"""Inference backends behind one interface: ``Backend.run(x N x C x H x W float32) -> logits N x K x H x W``;
``Backend.run_all(x)`` also returns the class logits (N x C) of a model with a class head (else None).

Kinds:

* ``torch``: eager PyTorch under ``torch.inference_mode`` (source: checkpoint, TorchScript file
  ``.ts``/``.torchscript``, a pickled module, or an ``nn.Module``).
* ``torch-compile``: the same model through ``torch.compile`` (inductor). Compilation happens at
  construction on a dummy input, so a missing C++ toolchain surfaces as :class:`BackendUnavailable`
  with a clear message instead of failing mid-stream.
* ``onnx``: onnxruntime CPUExecutionProvider on any ONNX file (fp32 or already-quantised int8).
* ``onnx-int8``: static QDQ int8 model. Source: an int8 ``.onnx`` as written by ``sonoseg export``,
  or a float model/ONNX plus ``calib_images`` to quantise on the fly.
* ``onnx-int8-dynamic``: dynamically quantised ONNX (benchmark comparison only; slow for convs).

Threads: torch uses ``torch.set_num_threads(threads)`` (process-global, re-applied before each
run in case another backend changed it); onnxruntime uses ``intra_op_num_threads=threads``,
``inter_op_num_threads=1`` (sequential graph), graph optimisation level ALL, and pool threads that sleep
instead of spinning between runs: by default they spin after each run, and on a two-core cart they then
take the cores from the next frame's preprocessing (CLAHE, resize). Without spinning the 160x160 ``fast``
student's median went from 78 to 81 and from 74 to 84 frames/s (``bench/ort_spinning.py``, two interleaved
runs, AMD EPYC, 2 threads); ``SONOSEG_ORT_SPINNING=1`` restores onnxruntime's default. Only the modules a
backend needs are imported, so an ONNX-only deployment never loads torch.
"""

from __future__ import annotations

import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from sonoseg.errors import ConfigError, InputError, SonosegError

KINDS = ("torch", "torch-compile", "onnx", "onnx-int8", "onnx-int8-dynamic")
SPINNING_ENV = "SONOSEG_ORT_SPINNING"  # "1": onnxruntime's pool threads spin between runs (its default)
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")


class BackendUnavailable(SonosegError):
    """The backend cannot run on this machine (missing runtime/toolchain); message says why."""


class Backend(ABC):
    """One model + one runtime. ``config`` is the SonosegConfig carried by the model file (or None)."""

    kind: str = ""

    def __init__(self, threads: Optional[int], config=None, source: str = ""):
        self.threads = threads
        self.config = config
        self.source = source
        self._tmpdir: Optional[tempfile.TemporaryDirectory] = None  # owns on-the-fly exports
        self.note = ""  # how it was chosen/built (backend "auto"), for logs and results

    @property
    def name(self) -> str:
        return self.kind

    @abstractmethod
    def run_all(self, x: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """(mask logits N x K x H x W, class logits N x C or None) for a float32 N x C x H x W batch."""

    def run(self, x: np.ndarray) -> np.ndarray:
        """Mask logits for a float32 N x C x H x W batch."""
        return self.run_all(x)[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.run(x)

    def close(self) -> None:
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} threads={self.threads} source={self.source!r}>"


def _check_input(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4:
        raise ConfigError(f"backend input must be N x C x H x W, got shape {x.shape}")
    return np.ascontiguousarray(x, dtype=np.float32)


# -- torch ----------------------------------------------------------------------------------------
def load_torch_model(source: Any):
    """``(nn.Module in eval mode, SonosegConfig | None)`` from a module, checkpoint or TorchScript file."""
    import torch

    if isinstance(source, torch.nn.Module):
        return source.eval(), None
    path = Path(source)
    if not path.is_file():
        raise InputError(path, "model file not found")
    from sonoseg.runtime.torchscript import SUFFIXES, is_torchscript_file, load_torchscript

    if path.suffix in SUFFIXES or is_torchscript_file(path):
        return load_torchscript(path)
    if path.suffix == ".onnx":
        raise InputError(path, "an ONNX file needs the 'onnx' backend, not a torch one")
    from sonoseg._compat import ensure_torchvision
    from sonoseg.models.checkpoint import FORMAT, load_model

    ensure_torchvision()  # a pickled smp/timm module imports torchvision while unpickling
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise InputError(path, f"not a readable model file ({type(exc).__name__})") from exc
    if isinstance(obj, torch.nn.Module):  # whole pickled module (benchmark artefacts)
        return obj.eval(), None
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        del obj
        return load_model(path)
    raise InputError(path, "not a sonoseg checkpoint, TorchScript file or pickled nn.Module")


class TorchBackend(Backend):
    kind = "torch"

    def __init__(self, model, threads: Optional[int] = None, config=None, source: str = ""):
        import torch

        super().__init__(threads if threads else torch.get_num_threads(), config, source)
        self._explicit_threads = bool(threads)
        self.model = model.eval()
        self._apply_threads()

    def _apply_threads(self) -> None:
        import torch

        if self._explicit_threads and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)

    def _forward(self, t):
        return self.model(t)

    def run_all(self, x: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
        import torch

        from sonoseg.models.padding import split_outputs

        self._apply_threads()
        with torch.inference_mode():
            y, c = split_outputs(self._forward(torch.from_numpy(_check_input(x))))
        return y.float().numpy(), (None if c is None else c.float().numpy())


class TorchCompileBackend(TorchBackend):
    kind = "torch-compile"

    def __init__(self, model, threads: Optional[int] = None, config=None, source: str = "",
                 warmup_shape: Optional[tuple[int, ...]] = None):
        import torch

        super().__init__(model, threads, config, source)
        try:
            self.compiled = torch.compile(self.model, backend="inductor", dynamic=False)
            if warmup_shape is not None:
                with torch.inference_mode():
                    self.compiled(torch.zeros(warmup_shape))
        except Exception as exc:  # noqa: BLE001 - no compiler, unsupported op, ...
            raise BackendUnavailable(
                f"torch-compile unavailable: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
                "(inductor needs a working C++ compiler; use the 'torch' or 'onnx' backend)") from exc

    def _forward(self, t):
        return self.compiled(t)


# -- onnxruntime ----------------------------------------------------------------------------------
class OnnxBackend(Backend):
    kind = "onnx"

    def __init__(self, path: str | Path, threads: Optional[int] = None, kind: str = "onnx"):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable("onnxruntime is not installed (pip install onnxruntime)") from exc
        from sonoseg.runtime.onnx_export import read_onnx_config

        path = Path(path)
        if not path.is_file():
            raise InputError(path, "ONNX file not found")
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads) if threads else 0  # 0 = ORT default (physical cores)
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        so.add_session_config_entry("session.intra_op.allow_spinning", ort_spinning())
        try:
            self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            config = read_onnx_config(path)
        except Exception as exc:  # noqa: BLE001
            raise InputError(path, f"not a loadable ONNX model ({type(exc).__name__})") from exc
        super().__init__(threads, config, str(path))
        self.kind = kind
        self.path = path
        self.input_name = self.session.get_inputs()[0].name

    def run_all(self, x: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
        out = self.session.run(None, {self.input_name: _check_input(x)})
        return out[0], (out[1] if len(out) > 1 else None)


def ort_spinning() -> str:
    """onnxruntime's ``session.intra_op.allow_spinning``: "0" unless ``$SONOSEG_ORT_SPINNING`` is "1"."""
    import os

    return "1" if os.environ.get(SPINNING_ENV, "0").strip() == "1" else "0"


def warn_int8_scheme(be: Backend, say) -> None:
    """Tell ``say`` when an int8 ONNX file's scheme is not exact on this CPU."""
    path = getattr(be, "path", None)
    if path is None or not be.kind.startswith("onnx"):
        return
    from sonoseg.runtime.quantize import quantization_info, scheme_warning

    msg = scheme_warning(quantization_info(path))
    if msg:
        import warnings

        warnings.warn(f"{be.source}: {msg}", stacklevel=2)
        if say:
            say(f"warning: {Path(be.source).name}: {msg}")


def read_onnx_config_safe(path: Path):
    from sonoseg.runtime.onnx_export import read_onnx_config

    try:
        return read_onnx_config(path)
    except Exception:  # noqa: BLE001 - no or foreign metadata
        return None


def _is_quantized(path: Path, mode: str) -> bool:
    from sonoseg.runtime.quantize import quantization_info

    info = quantization_info(path)
    return bool(info) and info.get("mode") == mode


def create_backend(kind: str, source: Any, threads: Optional[int] = None, *, config=None,
                   calib_images: Optional[Sequence[np.ndarray]] = None,
                   compile_shape: Optional[tuple[int, ...]] = None) -> Backend:
    """Build a backend of ``kind`` from ``source`` (checkpoint / TorchScript / ONNX path, or nn.Module).

    ``config`` overrides/supplies the SonosegConfig (e.g. for a bare nn.Module). For ``onnx*`` kinds
    a non-ONNX source is exported to a temporary ONNX first; ``onnx-int8`` then needs
    ``calib_images`` (model-grid training images) unless the source is already a static int8 file.
    ``compile_shape``: input shape to compile ``torch-compile`` for at construction (default:
    1 x C x config size).
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown backend {kind!r}; choose one of {', '.join(KINDS)}")
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    if kind in ("torch", "torch-compile"):
        model, cfg = load_torch_model(source)
        cfg = config or cfg
        src = source if isinstance(source, (str, Path)) else type(source).__name__
        if kind == "torch":
            return TorchBackend(model, threads, cfg, str(src))
        if compile_shape is None:
            ch = cfg.model.in_channels if cfg is not None else 1
            hw = tuple(cfg.preprocess.size) if cfg is not None else (256, 256)
            compile_shape = (1, ch, *hw)
        return TorchCompileBackend(model, threads, cfg, str(src), compile_shape)

    try:
        return _create_onnx_backend(kind, source, threads, config, calib_images)
    except SonosegError as exc:
        if not isinstance(source, (str, Path)) or str(source) in str(exc):
            raise
        # an on-the-fly export or quantisation failed inside a temporary folder: name the user's file
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(Path(source), f"backend {kind!r} failed: {_strip_tmp(msg)}") from exc


def _strip_tmp(msg: str) -> str:
    import re

    return re.sub(r"\S*sonoseg-(?:be|q)-[^/\s]*/\S*?:?\s", "", msg).strip()


def _create_onnx_backend(kind, source, threads, config, calib_images):
    tmpdir = None
    path = Path(source) if isinstance(source, (str, Path)) else None
    if path is None or path.suffix != ".onnx":
        from sonoseg.runtime.onnx_export import export_onnx

        model, cfg = load_torch_model(source)
        cfg = config or cfg
        tmpdir = tempfile.TemporaryDirectory(prefix="sonoseg-be-")
        path = Path(tmpdir.name) / "model.onnx"
        export_onnx(model, path, config=cfg)
    if kind == "onnx-int8" and not _is_quantized(path, "static"):
        from sonoseg.runtime.quantize import quantize_static_int8

        if not calib_images:  # the shipped breast-US calibration frames, preprocessed for this model
            from sonoseg.runtime.calibration import calibration_grids

            cfg = config or read_onnx_config_safe(path)
            if cfg is None:
                raise ConfigError(f"{source}: 'onnx-int8' needs calibration images: the file carries no config")
            calib_images = calibration_grids(cfg)[0]

        tmpdir = tmpdir or tempfile.TemporaryDirectory(prefix="sonoseg-be-")
        quantize_static_int8(path, Path(tmpdir.name) / "model.int8.onnx", calib_images)
        path = Path(tmpdir.name) / "model.int8.onnx"
    elif kind == "onnx-int8-dynamic" and not _is_quantized(path, "dynamic"):
        from sonoseg.runtime.quantize import quantize_dynamic_int8

        tmpdir = tmpdir or tempfile.TemporaryDirectory(prefix="sonoseg-be-")
        quantize_dynamic_int8(path, Path(tmpdir.name) / "model.int8d.onnx")
        path = Path(tmpdir.name) / "model.int8d.onnx"
    be = OnnxBackend(path, threads, kind=kind)
    if config is not None:
        be.config = config
    if tmpdir is not None and isinstance(source, (str, Path)):
        be.source = str(source)  # messages name the user's file, not the temporary export
    be._tmpdir = tmpdir
    return be
