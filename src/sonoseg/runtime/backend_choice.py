"""``backend="auto"``: the fastest backend that is correct on this machine, for a model file.

* ``.onnx`` -> onnxruntime as is (an int8 file built for VNNI on a CPU without it gets a warning).
* TorchScript -> torch.
* a checkpoint -> its ONNX version from the cache (:mod:`sonoseg.runtime.fast_model`), int8 for the
  shipped models when the int8 masks agree with PyTorch's on this CPU, else fp32 ONNX; int8 for a
  user's checkpoint needs calibration data of its own domain, so it comes from ``sonoseg export``
  (or ``--backend onnx-int8``) instead. Falls back to eager torch with a note when onnxruntime is
  missing or the model does not export.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional



def _is_shipped(path: Path) -> bool:
    from sonoseg.models.shipped import assets_dir

    try:
        return path.resolve().is_relative_to((assets_dir() / "models").resolve())
    except OSError:
        return False


def choose_backend(kind: str, path: Path, threads: Optional[int] = None,
                   log: Optional[Callable[[str], None]] = None, cache_dir: Optional[Path] = None):
    """A :class:`~sonoseg.runtime.backends.Backend` for ``path``; ``kind`` "auto" chooses (see module doc)."""
    from sonoseg.runtime.backends import create_backend, warn_int8_scheme

    say = log or (lambda s: None)
    if kind != "auto":
        be = create_backend(kind, path, threads=threads)
    elif path.suffix == ".onnx":
        be = create_backend("onnx", path, threads=threads)
    else:
        from sonoseg.runtime.torchscript import SUFFIXES, is_torchscript_file

        if path.suffix in SUFFIXES or (path.is_file() and is_torchscript_file(path)):
            be = create_backend("torch", path, threads=threads)
        else:
            be = _fast_or_torch(path, threads, say, cache_dir)
    warn_int8_scheme(be, say)
    return be


def _fast_or_torch(path: Path, threads, say, cache_dir):
    from sonoseg.runtime.backends import create_backend, load_torch_model

    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        say("onnxruntime not installed: using eager PyTorch")
        return create_backend("torch", path, threads=threads)
    from sonoseg.runtime.onnx_export import ExportError
    from sonoseg.runtime.fast_model import build_fast_model

    try:
        from sonoseg.models.shipped import FP32_ONLY

        quantize = _is_shipped(path) and path.name not in FP32_ONLY  # the accurate tier runs as validated: fp32
        fm = build_fast_model(path, quantize=quantize, cache_dir=cache_dir, threads=threads or 1, log=say)
    except ExportError as exc:
        say(f"{path.name}: no ONNX version ({str(exc).splitlines()[0]}); using eager PyTorch")
        return create_backend("torch", path, threads=threads)
    be = create_backend(fm.kind, fm.path, threads=threads)
    _, cfg = load_torch_model(path) if be.config is None else (None, be.config)
    be.config, be.source, be.note = cfg, str(path), fm.note
    return be
