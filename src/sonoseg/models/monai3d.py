"""MONAI's volumetric networks in the same registry as the 2D ones (``create_model("segresnet", ...)``).

Each builder takes ``spatial_dims`` (default 3; 2 works too) and returns the bare MONAI network with
``size_multiple`` = its total down-sampling, so :class:`~sonoseg.models.padding.PadToMultiple` lets it
take volumes of any D x H x W (sliding-window ROIs and whole validation volumes alike).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

from torch import nn

from sonoseg.models.registry import register_model


def _no_encoder(encoder: Optional[str], name: str) -> None:
    if encoder is not None:  # create_model already refuses this; kept for direct builder calls
        raise TypeError(f"{name} has no exchangeable encoder")


@register_model("unet3d", description="MONAI UNet (residual units), 3D by default (spatial_dims=3)")
def build_unet3d(encoder=None, in_channels: int = 1, classes: int = 2, spatial_dims: int = 3,
                 channels: Sequence[int] = (16, 32, 64, 128), strides: Optional[Sequence[int]] = None,
                 num_res_units: int = 1, dropout: float = 0.0, norm: str = "instance") -> nn.Module:
    from monai.networks.nets import UNet

    _no_encoder(encoder, "unet3d")
    channels = tuple(int(c) for c in channels)
    strides = tuple(int(s) for s in strides) if strides is not None else (2,) * (len(channels) - 1)
    net = UNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=classes, channels=channels,
               strides=strides, num_res_units=num_res_units, dropout=dropout, norm=norm)
    net.size_multiple = int(math.prod(strides))
    return net


@register_model("dynunet", description="MONAI DynUNet (nnU-Net-like), 3D by default (spatial_dims=3)")
def build_dynunet(encoder=None, in_channels: int = 1, classes: int = 2, spatial_dims: int = 3,
                  filters: Sequence[int] = (16, 32, 64, 128), deep_supervision: bool = False,
                  norm_name: str = "instance", dropout: Optional[float] = None) -> nn.Module:
    from monai.networks.nets import DynUNet

    _no_encoder(encoder, "dynunet")
    filters = [int(f) for f in filters]
    n = len(filters)
    kernels = [[3] * spatial_dims] * n
    strides = [[1] * spatial_dims] + [[2] * spatial_dims] * (n - 1)
    net = DynUNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=classes, kernel_size=kernels,
                  strides=strides, upsample_kernel_size=strides[1:], filters=filters, norm_name=norm_name,
                  deep_supervision=deep_supervision, dropout=dropout, res_block=True)
    net.size_multiple = 2 ** (n - 1)
    return net


@register_model("segresnet", description="MONAI SegResNet, 3D by default (spatial_dims=3)")
def build_segresnet(encoder=None, in_channels: int = 1, classes: int = 2, spatial_dims: int = 3,
                    init_filters: int = 8, blocks_down: Sequence[int] = (1, 2, 2, 4),
                    blocks_up: Sequence[int] = (1, 1, 1), dropout_prob: Optional[float] = None) -> nn.Module:
    from monai.networks.nets import SegResNet

    _no_encoder(encoder, "segresnet")
    blocks_down = tuple(int(b) for b in blocks_down)
    net = SegResNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=classes,
                    init_filters=init_filters, blocks_down=blocks_down, blocks_up=tuple(int(b) for b in blocks_up),
                    dropout_prob=dropout_prob)
    net.size_multiple = 2 ** (len(blocks_down) - 1)
    return net
