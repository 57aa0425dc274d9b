"""The classic U-Net (Ronneberger et al. 2015) as the seeds describe it, written to be read.

Layout (milesial/Pytorch-UNet style, padded 3x3 convolutions so sizes are preserved)::

    inc   DoubleConv(in, f0)                          -> skip 0   (H)
    down  MaxPool2d(2) + DoubleConv(f[i-1], f[i])     -> skip i   (H / 2**i), i = 1..depth-1
    mid   MaxPool2d(2) + DoubleConv(f[depth-1], f[depth])         (H / 2**depth, the bottleneck)
    up    ConvTranspose2d(k=2, s=2) (or bilinear x2), concat skip, DoubleConv -> f[i]
    head  Conv2d 1x1 -> classes (logits)

with ``f[i] = base_channels * 2**i``. DoubleConv = (Conv3x3 bias=False -> BatchNorm -> ReLU) x 2.

``depth`` counts the down-samplings. The default (base 64, depth 4) is the paper's network:
skip levels [64, 128, 256, 512] plus a 1024-channel bottleneck. The seed pseudocode
(``features=[64,128,256,512]``, ``up1 = ConvTranspose2d(512, 256)``, ``dec1 = DoubleConv(512,
256)``) is exactly ``UNet(base_channels=64, depth=3)``: there 512 is the bottleneck.

Up-sampling: ``bilinear=False`` (default, the seeds' ConvTranspose2d) halves the channels while
doubling the size, so the concatenation has 2*f[i] channels. ``bilinear=True`` keeps the channels
(parameter-free up-sampling, as in seed 004's U-Net) and the decoder DoubleConv takes
f[i+1] + f[i] channels.

The network itself needs H and W divisible by 2**depth (:attr:`UNet.size_multiple`);
:func:`sonoseg.models.create_model` wraps it in :class:`~sonoseg.models.padding.PadToMultiple`.
"""

from __future__ import annotations

import torch
from torch import nn


class DoubleConv(nn.Sequential):
    """(Conv3x3, bias=False -> BatchNorm -> ReLU) x 2; the bias is redundant before BatchNorm."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class Down(nn.Sequential):
    """Max-pool 2x2 then DoubleConv: halves H and W."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0):
        layers: list[nn.Module] = [nn.MaxPool2d(2), DoubleConv(in_channels, out_channels)]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


class Up(nn.Module):
    """Up-sample x2, concatenate the encoder skip, DoubleConv."""

    def __init__(
        self, in_channels: int, skip_channels: int, out_channels: int, bilinear: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        if bilinear:
            self.up: nn.Module = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            up_channels = in_channels
        else:
            up_channels = in_channels // 2
            self.up = nn.ConvTranspose2d(in_channels, up_channels, kernel_size=2, stride=2)
        self.conv = DoubleConv(up_channels + skip_channels, out_channels)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        x = torch.cat([skip, x], dim=1)
        return self.dropout(self.conv(x))


class UNet(nn.Module):
    """Classic U-Net returning logits (N x classes x H x W); H, W divisible by 2**depth.

    ``dropout`` (Dropout2d, channel-wise) is applied after the bottleneck and after every
    decoder block; 0 disables it (no dropout modules at all).
    """

    def __init__(
        self,
        in_channels: int = 1,
        classes: int = 1,
        base_channels: int = 64,
        depth: int = 4,
        bilinear: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if base_channels < 1:
            raise ValueError(f"base_channels must be >= 1, got {base_channels}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.in_channels = in_channels
        self.classes = classes
        self.depth = depth
        self.features = [base_channels * 2**i for i in range(depth + 1)]
        f = self.features

        self.inc = DoubleConv(in_channels, f[0])
        self.downs = nn.ModuleList(Down(f[i - 1], f[i]) for i in range(1, depth))
        self.bottleneck = Down(f[depth - 1], f[depth], dropout=dropout)
        self.ups = nn.ModuleList(
            Up(f[i + 1], f[i], f[i], bilinear=bilinear, dropout=dropout)
            for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(f[0], classes, kernel_size=1)

    @property
    def size_multiple(self) -> int:
        return 2**self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = self.bottleneck(skips[-1])
        for up, skip in zip(self.ups, reversed(skips)):
            x = up(x, skip)
        return self.head(x)


def _register() -> None:
    from sonoseg.errors import ConfigError
    from sonoseg.models.registry import register_model

    @register_model("unet", description="classic U-Net (DoubleConv, max-pool, ConvTranspose2d)")
    def build_classic_unet(encoder: None, in_channels: int, classes: int, **kwargs) -> UNet:
        try:
            return UNet(in_channels=in_channels, classes=classes, **kwargs)
        except ValueError as exc:
            raise ConfigError(f"unet: {exc}") from exc


_register()
