"""3D inference: sliding window (:mod:`sonoseg.models.sliding_window`) on the model grid, probabilities mapped back to
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
from sonoseg.models.sliding_window import sliding_window


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
        self.keep_largest = bool(config.postprocess.keep_largest)  # per organ: its largest 3D component

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu") -> "VolumePredictor":
        from sonoseg.errors import InputError
        from sonoseg.models.checkpoint import load_model

        model, cfg = load_model(path)
        if cfg.volume is None:
            raise InputError(path, "not a 3D model (its config has no volume section)")
        return cls(model, cfg, device, model_version=cfg.model.version or Path(path).name)

    @property
    def names(self) -> dict[int, str]:
        """Model class (1..K) -> organ name."""
        return self.config.volume.class_names()

    @property
    def label_names(self) -> dict[int, str]:
        """Training label value (the mask files' ids, e.g. TotalSegmentator's 5 = liver) -> organ name."""
        return {int(k): v for k, v in self.config.volume.labels.items()}

    def label_values(self, classes: np.ndarray) -> np.ndarray:
        """A map of model classes 0..K as the training label values (uint8, or uint16 above 255)."""
        ids = self.config.volume.class_ids()
        lut = np.zeros(len(ids) + 1, np.uint16 if max(ids, default=0) > 255 else np.uint8)
        lut[1:] = ids
        return lut[classes]

    @torch.no_grad()
    def predict(self, volume: Volume) -> VolumePrediction:
        import time

        from sonoseg.preprocess.volume import base_transforms, case_dict, model_grid_spacing

        t0 = time.perf_counter()
        vc = self.config.volume
        base = base_transforms(vc)
        d = base(case_dict(volume))
        img = d["image"]
        x = img.as_tensor()[None].to(self.device)
        t1 = time.perf_counter()
        logits = sliding_window(vc, self.model, x)[0]
        t2 = time.perf_counter()
        probs = torch.softmax(logits.float(), 0)
        del logits
        labels = resample_labels(probs, np.asarray(img.affine, np.float64), volume.array.shape[::-1],
                                 np.asarray(volume.affine, np.float64))
        out = labels.numpy().T  # [x, y, z] -> [z, y, x]
        if out.shape != volume.array.shape:  # MONAI returned another grid: never silently misplace voxels
            raise RuntimeError(f"inverted prediction has shape {out.shape}, volume {volume.array.shape}")
        if self.keep_largest:
            out = largest_component_per_label(out)
        t3 = time.perf_counter()
        return VolumePrediction(np.ascontiguousarray(out), tuple(int(s) for s in img.shape[1:]),
                                model_grid_spacing(img), t3 - t0,
                                {"preprocess": t1 - t0, "network": t2 - t1, "invert": t3 - t2})



def largest_component_per_label(labels: np.ndarray) -> np.ndarray:
    """Each organ reduced to its largest 26-connected component (an organ is one piece; scattered
    false positives elsewhere would inflate its volume and bounding box)."""
    from scipy import ndimage

    out = labels.copy()
    for c in np.unique(labels):
        if c == 0:
            continue
        comp, n = ndimage.label(labels == c, structure=np.ones((3, 3, 3), bool))
        if n > 1:
            sizes = np.bincount(comp.ravel())[1:]
            out[(comp > 0) & (comp != 1 + int(np.argmax(sizes)))] = 0
    return out


def _axis_map(to_model: np.ndarray):
    """For an axis-aligned mapping (a permutation with scales, no rotation): model axis r is driven by
    original axis ``perm[r]`` as ``scale[r] * index + offset[r]``; None for oblique grids."""
    a = to_model[:3, :3]
    big = np.abs(a) > 1e-9 * max(np.abs(a).max(), 1e-12)
    if not (big.sum(0) == 1).all() or not (big.sum(1) == 1).all():
        return None
    perm = [int(np.argmax(big[r])) for r in range(3)]
    return perm, [float(a[r, perm[r]]) for r in range(3)], [float(to_model[r, 3]) for r in range(3)]


def _lerp_axis(p: torch.Tensor, axis: int, coords: np.ndarray) -> torch.Tensor:
    """Linear interpolation of ``p`` along ``axis`` at fractional ``coords``; neighbours outside the
    array count as zero (grid_sample's zeros padding, align_corners=True)."""
    n = p.shape[axis]
    c = torch.as_tensor(coords, dtype=torch.float64)
    i0 = torch.floor(c)
    w1 = (c - i0).float()
    i0 = i0.long()
    shape = [1] * p.ndim
    shape[axis] = -1
    terms = []
    for idx, w in ((i0, 1.0 - w1), (i0 + 1, w1)):
        w = torch.where((idx >= 0) & (idx < n), w, torch.zeros_like(w))
        terms.append((p.index_select(axis, idx.clamp(0, n - 1)), w.view(shape)))
    (a, wa), (b, wb) = terms
    return torch.addcmul(a.mul_(wa), b, wb)


def resample_labels(probs: torch.Tensor, model_affine: np.ndarray, shape_xyz, affine: np.ndarray,
                    chunk_voxels: int = 2_000_000, separable: Optional[bool] = None) -> torch.Tensor:
    """Argmax labels (uint8, X x Y x Z) on the original grid (``shape_xyz``, ``affine``) of class
    probabilities given on the model grid (C x I x J x K, voxel -> world ``model_affine``).

    Every original voxel centre is mapped through the two affines into the model grid and the
    probabilities are sampled trilinearly there (torch ``grid_sample``), which is what inverting
    crop, spacing and orientation amounts to; voxels outside the model grid (cropped away) get
    background. Done in slabs of original slices, so memory is ``chunk_voxels`` x (C + 3) floats
    instead of K full-size probability maps (MONAI's inverse needs ~70 bytes per original voxel: 5.7 GB
    for 512x512x300)."""
    import torch.nn.functional as F

    amap = _axis_map(np.linalg.inv(model_affine) @ affine)
    if amap is not None and separable is not False:
        return _resample_separable(probs, amap, shape_xyz, chunk_voxels)
    c, ni, nj, nk = probs.shape
    nx, ny, nz = (int(v) for v in shape_xyz)
    to_model = torch.as_tensor(np.linalg.inv(model_affine) @ affine, dtype=torch.float64)
    sizes = torch.tensor([ni, nj, nk], dtype=torch.float64)
    inp = probs[None].float()  # N=1, C, D=I, H=J, W=K
    gx = torch.arange(nx, dtype=torch.float64)[:, None, None]
    gy = torch.arange(ny, dtype=torch.float64)[None, :, None]
    out = torch.empty((nx, ny, nz), dtype=torch.uint8)
    step = max(1, chunk_voxels // max(1, nx * ny))
    for z0 in range(0, nz, step):
        gz = torch.arange(z0, min(nz, z0 + step), dtype=torch.float64)[None, None, :]
        ijk = [to_model[r, 0] * gx + to_model[r, 1] * gy + to_model[r, 2] * gz + to_model[r, 3] for r in range(3)]
        # grid_sample (align_corners=True): -1 / +1 are the first / last voxel centres; last grid coord = W axis
        norm = [2.0 * v / max(float(sizes[r]) - 1.0, 1.0) - 1.0 if sizes[r] > 1 else torch.zeros_like(v)
                for r, v in enumerate(ijk)]
        grid = torch.stack([norm[2], norm[1], norm[0]], dim=-1).float()[None]
        sampled = F.grid_sample(inp, grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0]
        lab = sampled.argmax(0).to(torch.uint8)
        lab[sampled.amax(0) <= 0] = 0  # outside the model grid: background
        out[:, :, z0: z0 + gz.shape[-1]] = lab
    return out


def _argmax0(q: torch.Tensor) -> torch.Tensor:
    """argmax over the class axis as a running comparison (torch's strided argmax over dim 0 is ~20x
    slower here); all-zero voxels (outside the model grid) are background."""
    best = q[0].clone()
    lab = torch.zeros(q.shape[1:], dtype=torch.uint8)
    for c in range(1, q.shape[0]):
        win = q[c] > best
        lab[win] = c
        best = torch.maximum(best, q[c])
    lab[best <= 0] = 0
    return lab


def _resample_separable(probs: torch.Tensor, amap, shape_xyz, chunk_voxels: int) -> torch.Tensor:
    """:func:`resample_labels` for axis-aligned grids (the usual case): trilinear interpolation done as
    three 1-D interpolations, slab by slab (the same values as grid_sample, ~10x faster)."""
    perm, scale, offset = amap
    nx, ny, nz = (int(v) for v in shape_xyz)
    n_orig = (nx, ny, nz)
    # model axes reordered so that position a holds the model axis driven by original axis a
    order = [perm.index(a) for a in range(3)]
    p = probs.float().permute(0, *[1 + r for r in order])
    coords = [scale[r] * np.arange(n_orig[perm[r]], dtype=np.float64) + offset[r] for r in order]
    out = torch.empty((nx, ny, nz), dtype=torch.uint8)
    step = max(1, chunk_voxels // max(1, nx * ny))
    for z0 in range(0, nz, step):
        z1 = min(nz, z0 + step)
        q = _lerp_axis(p, 3, coords[2][z0:z1])
        q = _lerp_axis(q, 2, coords[1])
        q = _lerp_axis(q, 1, coords[0])  # the full-size pass last, gathering whole contiguous planes
        out[:, :, z0:z1] = _argmax0(q)
    return out


def is_3d_model(path) -> bool:
    """True for a sonoseg checkpoint (.pt) whose config has a volume section (the 3D path)."""
    from sonoseg.errors import InputError
    from sonoseg.models.checkpoint import load_checkpoint

    if path is None or not str(path).endswith((".pt", ".pth")):
        return False
    try:
        return bool(load_checkpoint(path).get("config", {}).get("volume"))
    except InputError:
        return False
