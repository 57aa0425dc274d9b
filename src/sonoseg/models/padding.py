"""Let any segmentation network take inputs of any height and width.

Encoder-decoder networks need H and W divisible by their total down-sampling factor (2**depth for
the classic U-Net, the encoder's output stride for smp models) -- otherwise skip connections do
not line up or the output comes back at the wrong size. Ultrasound frames come in every size, so
:class:`PadToMultiple` pads the input up to the next multiple, runs the network and crops the
logits back to the input size: the caller never resizes and never sees the padding.

Padding choices (``mode``):

* ``"constant"`` (default): zeros. Ultrasound frames already have black borders outside the scan
  sector, so zeros look like "outside the image"; it works for every input size (even 1x1) and
  exports to ONNX as a plain ``Pad`` op that every runtime supports.
* ``"replicate"``: repeats the edge pixels; also valid for every size.
* ``"reflect"``: mirrors the image; needs the padding on each side to be smaller than the input
  side (fails on tiny inputs), so it is not the default.

The padding is split evenly between the two sides (the extra pixel goes bottom/right), so the
image stays centred in the receptive field. Pad amounts are computed from the input's shape with
plain integer arithmetic, which ``torch.jit.trace``/the TorchScript ONNX exporter record as shape
ops and ``torch.export`` keeps symbolic: exported graphs keep dynamic H and W.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sonoseg.errors import ConfigError

PAD_MODES = ("constant", "replicate", "reflect")


def _tracing() -> bool:
    return bool(torch.jit.is_tracing() or torch.compiler.is_compiling())


def _at_least(value, minimum: int):
    """max(value, minimum) that stays symbolic under jit tracing and torch.export."""
    if torch.jit.is_tracing() and isinstance(value, torch.Tensor):
        return torch.clamp(value, min=minimum)  # sizes are 0-dim tensors while tracing
    return torch.sym_max(value, minimum)


def padded_size(size: int, multiple: int, min_size: int = 0) -> int:
    """Smallest multiple of ``multiple`` that is >= max(size, min_size)."""
    target = max(size, min_size)
    return -(-target // multiple) * multiple


class PadToMultiple(nn.Module):
    """Wrap ``model`` so it accepts N x C x H x W inputs of any H, W (output cropped back to H, W).

    ``multiple``: required divisor of the padded H and W. ``min_size``: smallest padded side
    the network can process (e.g. PAN's pyramid pools its deepest map three more times).
    """

    def __init__(self, model: nn.Module, multiple: int, min_size: int = 0, mode: str = "constant"):
        super().__init__()
        if multiple < 1:
            raise ConfigError(f"pad multiple must be >= 1, got {multiple}")
        if mode not in PAD_MODES:
            raise ConfigError(f"pad_mode {mode!r} is not one of {', '.join(PAD_MODES)}")
        self.model = model
        self.multiple = int(multiple)
        # a min_size that is itself a multiple keeps "padded size is a multiple" true
        self.min_size = padded_size(int(min_size), self.multiple) if min_size > 0 else 0
        self.mode = mode

    def extra_repr(self) -> str:
        return f"multiple={self.multiple}, min_size={self.min_size}, mode={self.mode!r}"

    def _target(self, size):
        m = self.multiple
        target = (size + (m - 1)) // m * m
        if self.min_size > 0:
            target = _at_least(target, self.min_size)
        return target

    def forward(self, x: torch.Tensor):
        """Logits N x K x H x W, or ``(logits, class_logits N x C)`` for a model with a class head.

        Volumes (N x C x D x H x W, the 3D networks) are padded on all three spatial axes."""
        if x.ndim == 5:
            return self._forward_3d(x)
        h, w = x.shape[-2], x.shape[-1]
        pad_h = self._target(h) - h
        pad_w = self._target(w) - w
        if not _tracing() and pad_h == 0 and pad_w == 0:
            return self.model(x)
        top, left = pad_h // 2, pad_w // 2
        if self.mode == "constant":
            x = F.pad(x, (left, pad_w - left, top, pad_h - top), mode="constant", value=0.0)
        else:
            x = F.pad(x, (left, pad_w - left, top, pad_h - top), mode=self.mode)
        y = self.model(x)
        if isinstance(y, (tuple, list)):  # (mask logits, class logits): only the mask is cropped
            return y[0][..., top : top + h, left : left + w], y[1]
        return y[..., top : top + h, left : left + w]


    def _forward_3d(self, x: torch.Tensor) -> torch.Tensor:
        sizes = x.shape[-3:]
        pads = [self._target(int(s)) - int(s) for s in sizes]
        if not any(pads):
            return self.model(x)
        lo = [p // 2 for p in pads]
        flat = []  # F.pad order: last axis first
        for p, a in zip(reversed(pads), reversed(lo)):
            flat += [a, p - a]
        if self.mode == "constant":
            x = F.pad(x, flat, mode="constant", value=0.0)
        else:
            x = F.pad(x, flat, mode=self.mode)
        y = self.model(x)
        d, h, w = sizes
        return y[..., lo[0]: lo[0] + d, lo[1]: lo[1] + h, lo[2]: lo[2] + w]


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside a :class:`PadToMultiple` (or the module itself)."""
    while isinstance(model, PadToMultiple):
        model = model.model
    return model


def split_outputs(y):
    """``(mask_logits, class_logits or None)`` from a model output (tensor, tuple or list)."""
    if isinstance(y, (tuple, list)):
        return y[0], (y[1] if len(y) > 1 else None)
    return y, None
