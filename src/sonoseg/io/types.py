"""Small dataclasses that the io stage hands to the rest of the pipeline (numpy + metadata only)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # numpy only for annotations: this module stays import-light
    import numpy as np


@dataclass(frozen=True)
class UltrasoundRegion:
    """One entry of DICOM SequenceOfUltrasoundRegions (pixel box + physical calibration)."""

    x0: int
    y0: int
    x1: int  # inclusive, as in RegionLocationMaxX1
    y1: int
    physical_delta_x: Optional[float] = None  # in the unit below, per pixel
    physical_delta_y: Optional[float] = None
    unit_x: Optional[int] = None  # PhysicalUnitsXDirection code (3 = cm)
    unit_y: Optional[int] = None
    spatial_format: Optional[int] = None  # RegionSpatialFormat (1 = 2D tissue)
    data_type: Optional[int] = None  # RegionDataType (1 = tissue)


@dataclass
class ImageMeta:
    """What the pipeline needs to know about one input, without patient identifiers."""

    path: str
    format: str  # "dicom" | "nifti" | "image"
    modality: Optional[str] = None
    rows: int = 0
    columns: int = 0
    frames: int = 1
    samples_per_pixel: int = 1
    photometric: Optional[str] = None
    transfer_syntax: Optional[str] = None
    bits_stored: Optional[int] = None
    pixel_spacing_mm: Optional[tuple[float, float]] = None  # (row, col) in mm
    spacing_source: Optional[str] = None  # "PixelSpacing" | "SequenceOfUltrasoundRegions" | ...
    study_uid: Optional[str] = None
    series_uid: Optional[str] = None
    sop_uid: Optional[str] = None
    sop_class_uid: Optional[str] = None
    us_regions: list[UltrasoundRegion] = field(default_factory=list)
    affine: Optional[list[list[float]]] = None  # 4x4 RAS affine for volumes (NIfTI / series)
    transfer_syntax_name: Optional[str] = None  # e.g. "JPEG Baseline (Process 1)"; transfer_syntax is the UID
    warnings: list[str] = field(default_factory=list)  # inconsistencies tolerated, e.g. calibration dropped
    frame_time_ms: Optional[float] = None  # cine: time between frames (DICOM FrameTime / NIfTI pixdim[4])

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LoadedImage:
    """Decoded pixels plus metadata. Pixels are display-ready: MONOCHROME1 inverted, colour as RGB.

    Shapes: HxW or HxWx3 (one frame), FxHxW[x3] (multi-frame), or the NIfTI array as nibabel gives it.
    """

    pixels: "np.ndarray"
    meta: ImageMeta

    @property
    def is_multiframe(self) -> bool:
        return self.meta.format == "dicom" and self.meta.frames > 1


@dataclass
class Volume:
    """A 3D scalar volume indexed ``array[z, y, x]``.

    ``affine`` maps voxel indices ``(x, y, z, 1)`` (NIfTI/nibabel order, i.e. reversed array axes)
    to RAS+ millimetres, exactly like a NIfTI sform; ``spacing`` is (z, y, x) in mm.
    """

    array: "np.ndarray"
    spacing: tuple[float, float, float]
    affine: "np.ndarray"
    meta: ImageMeta
