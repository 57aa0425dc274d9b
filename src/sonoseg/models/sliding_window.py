"""The 3D sliding window (MONAI, Gaussian blending), shared by training's validation forward and
inference so that both see a volume through the same windows."""

from __future__ import annotations

from typing import Optional

import torch

from sonoseg.preprocess.volume_config import VolumeConfig


def effective_roi(roi, shape, multiple: int = 1) -> tuple[int, ...]:
    """The window, shrunk on axes where the volume is smaller (to the volume's size rounded up to the
    network's multiple): MONAI would pad such axes to the full ROI with a constant, and a window that is
    mostly padding shifts the instance-norm statistics the network was trained with (a 14-slice
    volume in a 96-slice window comes out empty)."""
    m = max(1, int(multiple))
    return tuple(min(int(r), -(-int(s) // m) * m) for r, s in zip(roi, shape))


def sliding_window(vcfg: VolumeConfig, model, x: torch.Tensor) -> torch.Tensor:
    """Logits for a N x C x D x H x W batch through the configured sliding window."""
    roi = effective_roi(vcfg.roi_size, x.shape[2:], getattr(model, "multiple", 1))
    return make_inferer(vcfg, roi=roi)(x, model)


def make_inferer(vcfg: VolumeConfig, device: Optional[torch.device] = None, roi=None):
    """MONAI SlidingWindowInferer from the config (Gaussian blending by default)."""
    from monai.inferers import SlidingWindowInferer

    return SlidingWindowInferer(roi_size=tuple(roi or vcfg.roi_size), sw_batch_size=vcfg.sw_batch_size,
                                overlap=vcfg.overlap, mode=vcfg.blend, padding_mode="constant",
                                cval=float(vcfg.b_min), device=device, progress=False)
