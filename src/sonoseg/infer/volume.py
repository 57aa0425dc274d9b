"""3D inference: sliding window with Gaussian blending on the model grid, probabilities mapped back to
the ORIGINAL voxel grid (inverse of crop, spacing and orientation), argmax there.

Memory is bounded by the ROI size and ``sw_batch_size`` for the network; what grows with the volume is
the blended output on the model grid (K x voxels, float32) and, in the original grid, two float maps
(classes are mapped back one at a time with a running argmax) plus the uint8 label map.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from sonoseg.config import SonosegConfig
from sonoseg.io.types import Volume
from sonoseg.preprocess.volume_config import VolumeConfig


def make_inferer(vcfg: VolumeConfig, device: Optional[torch.device] = None):
    """MONAI SlidingWindowInferer from the config (Gaussian blending by default)."""
    from monai.inferers import SlidingWindowInferer

    return SlidingWindowInferer(roi_size=tuple(vcfg.roi_size), sw_batch_size=vcfg.sw_batch_size,
                                overlap=vcfg.overlap, mode=vcfg.blend, padding_mode="constant",
                                cval=float(vcfg.b_min), device=device, progress=False)


@dataclass
class VolumePrediction:
    labels: np.ndarray  # [z, y, x] uint8 model classes 0..K on the input's own grid
    model_grid_shape: tuple[int, int, int]
    model_grid_spacing: tuple[float, float, float]
    seconds: float = 0.0
    timings: dict = None  # seconds per phase: preprocess, network (sliding window), invert (to the original grid)


class VolumePredictor:
    """A 3D checkpoint ready to segment Volumes (torch backend)."""

    def __init__(self, model: torch.nn.Module, config: SonosegConfig, device: str | torch.device = "cpu",
                 model_version: Optional[str] = None):
        if config.volume is None:
            raise ValueError("not a 3D model config (no volume section)")
        self.model = model.eval().to(device)
        self.config = config
        self.device = torch.device(device)
        self.model_version = model_version or config.model.version or config.model.name

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu") -> "VolumePredictor":
        from sonoseg.errors import InputError
        from sonoseg.train.checkpoint import load_model

        model, cfg = load_model(path)
        if cfg.volume is None:
            raise InputError(path, "not a 3D model (its config has no volume section)")
        return cls(model, cfg, device, model_version=cfg.model.version or Path(path).name)

    @property
    def names(self) -> dict[int, str]:
        return self.config.volume.class_names()

    @torch.no_grad()
    def predict(self, volume: Volume) -> VolumePrediction:
        import time

        from sonoseg.preprocess.volume import base_transforms, case_dict, invert_to_original, model_grid_spacing

        t0 = time.perf_counter()
        vc = self.config.volume
        base = base_transforms(vc)
        d = base(case_dict(volume))
        img = d["image"]
        x = img.as_tensor()[None].to(self.device)
        t1 = time.perf_counter()
        logits = make_inferer(vc)(x, self.model)[0]
        t2 = time.perf_counter()
        probs = torch.softmax(logits.float(), 0)
        del logits
        best, labels = None, None
        for c in range(probs.shape[0]):  # one class at a time: 2 float maps in the original grid, not K
            p = invert_to_original(probs[c: c + 1], img, base)[0]
            if best is None:
                best, labels = p, torch.zeros(p.shape, dtype=torch.uint8)
            else:
                win = p > best
                best = torch.where(win, p, best)
                labels[win] = c
        out = labels.to(torch.uint8).cpu().numpy().T  # [x, y, z] -> [z, y, x]
        if out.shape != volume.array.shape:  # MONAI returned another grid: never silently misplace voxels
            raise RuntimeError(f"inverted prediction has shape {out.shape}, volume {volume.array.shape}")
        t3 = time.perf_counter()
        return VolumePrediction(np.ascontiguousarray(out), tuple(int(s) for s in img.shape[1:]),
                                model_grid_spacing(img), t3 - t0,
                                {"preprocess": t1 - t0, "network": t2 - t1, "invert": t3 - t2})



def is_3d_model(path) -> bool:
    """True for a sonoseg checkpoint (.pt) whose config has a volume section (the 3D path)."""
    from sonoseg.errors import InputError
    from sonoseg.train.checkpoint import load_checkpoint

    if path is None or not str(path).endswith((".pt", ".pth")):
        return False
    try:
        return bool(load_checkpoint(path).get("config", {}).get("volume"))
    except InputError:
        return False
