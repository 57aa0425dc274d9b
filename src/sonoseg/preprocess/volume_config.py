"""The one config section of the 3D (CT) path: its presence (``volume:`` in the YAML) makes a
config, a dataset run and a checkpoint 3D. Saved in every checkpoint, so inference reproduces the
training preprocessing (orientation, spacing, window, crop) and can invert it exactly.

Seed 002: resample to one voxel spacing, window with ``ScaleIntensityRange`` (a_min/a_max/b_min/b_max
are tunable), crop to the body, and train on fixed-size groups of slices so volumes with different
slice counts train together (``slice_group``).
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator


# CT windows as (level, width) in HU -> a_min = L - W/2, a_max = L + W/2 (common radiology presets)
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "abdomen": (40.0, 400.0),  # soft tissue: -160..240 HU
    "liver": (60.0, 160.0),
    "mediastinum": (50.0, 350.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "wide": (0.0, 2000.0),  # -1000..1000 HU: whole body incl. air and most bone
}


class SliceGroupConfig(BaseModel):
    """Seed 002's fixed-size groups of ``size`` slices (along the last RAS axis, S) with ``overlap``."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(65, ge=1)
    overlap: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _check(self):
        if self.overlap >= self.size:
            raise ValueError(f"slice_group.overlap ({self.overlap}) must be smaller than size ({self.size})")
        return self


class VolumeConfig(BaseModel):
    """3D preprocessing + patch sampling + sliding-window inference."""

    model_config = ConfigDict(extra="forbid")

    # label id in the mask files -> organ name; the model's class c (1..K) is the c-th id in this mapping
    # (sorted by id), every other id is background. Model classes = len(labels) + 1.
    labels: dict[int, str] = Field(default_factory=dict)
    orientation: str = "RAS"
    spacing: Optional[tuple[float, float, float]] = (3.0, 3.0, 3.0)  # mm along R, A, S; null: keep the grid
    window: Optional[str] = "abdomen"  # a CT_WINDOWS preset; null: a_min/a_max below
    a_min: Optional[float] = None
    a_max: Optional[float] = None
    b_min: float = 0.0
    b_max: float = 1.0
    clip: bool = True
    crop_foreground: bool = True  # crop to voxels whose windowed value > b_min (the body), + margin
    crop_margin: int = Field(2, ge=0)  # voxels of the model grid
    # training patches: RandCropByPosNegLabel (pos:neg centre ratio), num_samples per volume per step
    patch_size: tuple[int, int, int] = (96, 96, 96)
    pos: float = Field(2.0, ge=0)
    neg: float = Field(1.0, ge=0)
    num_samples: int = Field(2, ge=1)
    slice_group: Optional[SliceGroupConfig] = None  # train on fixed slice groups instead of random crops
    # inference: MONAI SlidingWindowInferer with Gaussian blending
    roi_size: tuple[int, int, int] = (96, 96, 96)
    sw_batch_size: int = Field(1, ge=1)
    overlap: float = Field(0.25, ge=0, lt=1)
    blend: Literal["gaussian", "constant"] = "gaussian"

    @model_validator(mode="after")
    def _check(self):
        if self.window is not None and self.window not in CT_WINDOWS:
            raise ValueError(f"volume.window {self.window!r} is not one of {', '.join(CT_WINDOWS)} (or null + a_min/a_max)")
        if self.window is None and (self.a_min is None or self.a_max is None):
            raise ValueError("volume.window is null: set volume.a_min and volume.a_max (HU)")
        if any(k < 1 for k in self.labels):
            raise ValueError("volume.labels: ids must be >= 1 (0 is background)")
        return self

    def intensity_range(self) -> tuple[float, float]:
        """(a_min, a_max) in HU: explicit values win over the preset."""
        if self.a_min is not None and self.a_max is not None:
            return float(self.a_min), float(self.a_max)
        level, width = CT_WINDOWS[self.window]
        return level - width / 2.0, level + width / 2.0

    def class_ids(self) -> list[int]:
        """Source label ids in model class order (class c = ids[c - 1])."""
        return sorted(self.labels)

    def class_names(self) -> dict[int, str]:
        """Model class -> organ name."""
        return {c: self.labels[i] for c, i in enumerate(self.class_ids(), start=1)}
