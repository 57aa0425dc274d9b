"""Small dataclasses that the io stage hands to the rest of the pipeline (numpy + metadata only)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional


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

    def to_dict(self) -> dict:
        return asdict(self)
