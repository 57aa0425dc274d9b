"""Make ``import torchvision`` work beside a CPU-only torch build.

Why this exists: PyPI's torchvision wheels are linked against the CUDA build of torch
(``libtorch_cuda.so``, ``libc10_cuda.so``). Installed next to the CPU build of the same torch
version (``torch==2.13.0+cpu``) its C extension ``torchvision._C`` cannot load. torchvision
tolerates that for most ops, but ``torchvision/_meta_registrations.py`` unconditionally registers
fake kernels for ``torchvision::nms`` and ``torchvision::qnms``; with no ``_C`` those operators were
never defined, so ``import torchvision`` dies with ``RuntimeError: operator torchvision::nms does
not exist`` -- and so do segmentation_models_pytorch and timm, which import it.

What we do: only when the first import fails with exactly that error, we define the two operator
schemas ourselves (same signatures as torchvision's C++ ``m.def``) with a pure-torch CPU kernel for
``nms`` (greedy NMS, for completeness; segmentation never calls it), then import torchvision again.
Its pure-Python parts (``torchvision.models``, ``transforms``) are all smp/timm need.

A user with a matching CUDA torch+torchvision pair (or torchvision's own CPU wheel from
download.pytorch.org) is unaffected: the first import succeeds and nothing is defined.
"""

from __future__ import annotations

import sys
import threading

_LOCK = threading.Lock()
_LIB = None  # keep the torch.library.Library alive for the life of the process
_STATE: dict[str, str] = {"mode": "not-imported"}

_NMS_SCHEMA = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"


def _nms_cpu(dets, scores, iou_threshold: float):
    """Greedy non-maximum suppression in plain torch (boxes as x1, y1, x2, y2)."""
    import torch

    if dets.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=dets.device)
    x1, y1, x2, y2 = dets.unbind(1)
    areas = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    order = scores.argsort(descending=True)
    keep = []
    suppressed = torch.zeros(dets.shape[0], dtype=torch.bool, device=dets.device)
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        xx1 = torch.maximum(x1[i], x1)
        yy1 = torch.maximum(y1[i], y1)
        xx2 = torch.minimum(x2[i], x2)
        yy2 = torch.minimum(y2[i], y2)
        inter = (xx2 - xx1).clamp(min=0) * (yy2 - yy1).clamp(min=0)
        iou = inter / (areas[i] + areas - inter).clamp(min=1e-12)
        suppressed |= iou > iou_threshold
    return torch.tensor(keep, dtype=torch.long, device=dets.device)


def _define_missing_ops() -> None:
    global _LIB
    import torch

    if _LIB is not None:
        return
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for name in ("nms", "qnms"):
        if not torch._C._dispatch_has_kernel(f"torchvision::{name}"):
            try:
                lib.define(name + _NMS_SCHEMA)
            except RuntimeError:  # already defined by someone else
                continue
            if name == "nms":
                lib.impl(name, _nms_cpu, "CPU")
    _LIB = lib


def ensure_torchvision():
    """Import torchvision, repairing the CPU-torch/CUDA-torchvision mismatch if needed.

    Returns the torchvision module. Call this before importing segmentation_models_pytorch or timm.
    """
    with _LOCK:
        if "torchvision" in sys.modules and _STATE["mode"] != "not-imported":
            return sys.modules["torchvision"]
        try:
            import torchvision

            _STATE["mode"] = "native"
            return torchvision
        except RuntimeError as exc:
            if "torchvision::" not in str(exc) or "does not exist" not in str(exc):
                raise
        for mod in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[mod]
        _define_missing_ops()
        import torchvision

        _STATE["mode"] = "shim"
        return torchvision


def torchvision_mode() -> str:
    """'native' (torchvision's C ops loaded), 'shim' (pure-Python torchvision) or 'not-imported'."""
    return _STATE["mode"]
