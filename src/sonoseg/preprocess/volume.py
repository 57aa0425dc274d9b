"""3D preprocessing as MONAI dictionary transforms, built from :class:`VolumeConfig`.

Volumes come from sonoseg.io (NIfTI file or DICOM series folder) as ``Volume`` ([z, y, x] array, RAS
affine of voxel (x, y, z)); MONAI wants channel-first arrays in the affine's own axis order, so
:func:`case_dict` hands it ``array.T[None]`` as a ``MetaTensor`` carrying the affine. The deterministic
part (:func:`base_transforms`: orientation, spacing, window, foreground crop) is invertible: MONAI
records every applied operation on the tensor, and :func:`invert_to_original` replays them backwards
so predictions land in the original voxel grid. Random patch sampling (:func:`patch_transforms`) is
training-only and never inverted.
"""

from __future__ import annotations

import copy
from functools import partial
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from sonoseg.errors import InputError
from sonoseg.io.types import Volume
from sonoseg.preprocess.volume_config import VolumeConfig

KEYS = ("image", "label")
_AXIS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))  # RAS+ world, as NIfTI and sonoseg.io use


def read_volume(path: str | Path) -> Volume:
    """A NIfTI file or a DICOM series (folder, or one multi-frame file) -> Volume."""
    from sonoseg.io import load_series, read_nifti
    from sonoseg.io.detect import detect_format

    p = Path(path)
    if p.is_dir():
        return load_series(p)
    fmt = detect_format(p)
    if fmt == "nifti":
        return read_nifti(p)
    if fmt == "dicom":
        return load_series(p)
    raise InputError(p, f"not a volume (NIfTI or DICOM series), detected {fmt}")


def class_lookup(vcfg: VolumeConfig, max_id: int) -> np.ndarray:
    """Lookup table source label id -> model class (ids not in ``vcfg.labels`` -> 0)."""
    lut = np.zeros(max(max_id, max(vcfg.labels or [0])) + 1, np.uint8)
    for c, i in enumerate(vcfg.class_ids(), start=1):
        lut[i] = c
    return lut


def to_classes(mask: np.ndarray, vcfg: VolumeConfig, path: str | Path = "mask") -> np.ndarray:
    """Label map with source ids -> model classes 0..K (uint8)."""
    m = np.asarray(mask)
    if m.dtype.kind == "f":
        if not np.all(m == np.round(m)):
            raise InputError(path, "label map has non-integer values")
        m = m.astype(np.int64)
    if m.size and m.min() < 0:
        raise InputError(path, f"label map has negative label {int(m.min())}")
    if not vcfg.labels:
        return m.astype(np.uint8)
    return class_lookup(vcfg, int(m.max()) if m.size else 0)[m]


def case_dict(image: Volume, mask: Optional[np.ndarray] = None) -> dict:
    """MONAI input dict: {"image": 1 x X x Y x Z float32 MetaTensor[, "label": uint8 same grid]}."""
    from monai.data import MetaTensor

    aff = torch.as_tensor(np.asarray(image.affine, dtype=np.float64))
    d = {"image": MetaTensor(torch.from_numpy(np.ascontiguousarray(image.array.T, dtype=np.float32))[None],
                             affine=aff.clone())}
    if mask is not None:
        d["label"] = MetaTensor(torch.from_numpy(np.ascontiguousarray(np.asarray(mask).T))[None], affine=aff.clone())
    return d


def _body(x, threshold: float):
    return x > threshold


def base_transforms(vcfg: VolumeConfig):
    """Orientation -> Spacing -> ScaleIntensityRange window -> CropForeground (invertible). Works on
    {"image"} and {"image", "label"} dicts alike (labels resampled nearest-neighbour), so one instance
    both preprocesses and inverts (MONAI checks that the inverting transform is the applied one)."""
    from monai import transforms as T

    keys, kw = list(KEYS), {"allow_missing_keys": True}
    a_min, a_max = vcfg.intensity_range()
    steps = [T.Orientationd(keys, axcodes=vcfg.orientation, labels=_AXIS_LABELS, **kw)]
    if vcfg.spacing is not None:
        steps.append(T.Spacingd(keys, pixdim=tuple(vcfg.spacing), mode=("bilinear", "nearest"), padding_mode="border", **kw))
    steps.append(T.ScaleIntensityRanged("image", a_min=a_min, a_max=a_max, b_min=vcfg.b_min, b_max=vcfg.b_max,
                                        clip=vcfg.clip))
    if vcfg.crop_foreground:
        lo = min(vcfg.b_min, vcfg.b_max)
        steps.append(T.CropForegroundd(keys, source_key="image", select_fn=partial(_body, threshold=lo),
                                       margin=vcfg.crop_margin, allow_smaller=True, **kw))
    return T.Compose(steps)


def patch_transforms(vcfg: VolumeConfig, seed: int = 0):
    """Training patches: RandCropByPosNegLabel (centres on organ vs background voxels at pos:neg),
    padded to ``patch_size`` when the volume is smaller. One call returns ``num_samples`` dicts."""
    from monai import transforms as T

    crop = T.RandCropByPosNegLabeld(list(KEYS), label_key="label", spatial_size=tuple(vcfg.patch_size), pos=vcfg.pos,
                                    neg=vcfg.neg, num_samples=1, image_key="image", image_threshold=vcfg.b_min,
                                    allow_smaller=True)
    pad = T.SpatialPadd(list(KEYS), spatial_size=tuple(vcfg.patch_size), mode="constant")
    t = T.Compose([crop, pad])
    t.set_random_state(seed=seed)
    return t


def invert_to_original(pred: torch.Tensor, transformed_image, base) -> torch.Tensor:
    """Map ``pred`` (C x model grid, e.g. class probabilities) back to the original voxel grid by
    inverting ``base`` (the instance that produced ``transformed_image``) with the operations recorded
    on ``transformed_image`` (bilinear for probabilities). Returns C x X x Y x Z in the input volume's
    own axis order."""
    from monai.data import MetaTensor

    # deep copy: MONAI's inverses consume the records (CropForeground pops its pad info), and the
    # predictor inverts one class at a time from the same records
    meta = MetaTensor(pred.float(), meta=dict(transformed_image.meta),
                      applied_operations=copy.deepcopy(list(transformed_image.applied_operations)))
    inv = base.inverse({"image": meta})["image"]
    return inv.as_tensor() if hasattr(inv, "as_tensor") else inv


def model_grid_spacing(t) -> tuple[float, float, float]:
    """Voxel size (mm) of a transformed MetaTensor's grid."""
    a = np.asarray(t.affine, dtype=np.float64)
    return tuple(float(v) for v in np.sqrt((a[:3, :3] ** 2).sum(axis=0)))
