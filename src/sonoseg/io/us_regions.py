"""Ultrasound calibration from SequenceOfUltrasoundRegions.

Ultrasound DICOM rarely has PixelSpacing; the physical size of a pixel lives in the region sequence
(PhysicalDeltaX/Y, in the unit coded by PhysicalUnitsX/YDirection). pydicom parses the sequence but
has no notion of "the" spacing of an image, so the choice is made here.
"""

from __future__ import annotations

from typing import Optional

from pydicom.dataset import Dataset

from sonoseg.io.types import UltrasoundRegion

UNIT_CM = 3  # PhysicalUnitsX/YDirection code for centimetres
SPATIAL_2D = 1  # RegionSpatialFormat code for 2D tissue/flow images


def _num(value, cast=float):
    try:
        return cast(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def parse_us_regions(ds: Dataset) -> list[UltrasoundRegion]:
    """All regions of the sequence, in file order; malformed items (no bounding box) are skipped."""
    regions = []
    for item in ds.get("SequenceOfUltrasoundRegions", None) or []:
        box = [_num(item.get(k), int) for k in ("RegionLocationMinX0", "RegionLocationMinY0", "RegionLocationMaxX1", "RegionLocationMaxY1")]
        if any(v is None for v in box):
            continue
        regions.append(
            UltrasoundRegion(
                x0=box[0],
                y0=box[1],
                x1=box[2],
                y1=box[3],
                physical_delta_x=_num(item.get("PhysicalDeltaX")),
                physical_delta_y=_num(item.get("PhysicalDeltaY")),
                unit_x=_num(item.get("PhysicalUnitsXDirection"), int),
                unit_y=_num(item.get("PhysicalUnitsYDirection"), int),
                spatial_format=_num(item.get("RegionSpatialFormat"), int),
                data_type=_num(item.get("RegionDataType"), int),
            )
        )
    return regions


def calibrated_regions(regions: list[UltrasoundRegion]) -> list[UltrasoundRegion]:
    """Regions whose X and Y units are both centimetres with positive deltas (the only ones that give
    a spatial pixel size: other units are seconds, cm/s, Hz... for Doppler/M-mode strips)."""
    return [
        r
        for r in regions
        if r.unit_x == UNIT_CM
        and r.unit_y == UNIT_CM
        and (r.physical_delta_x or 0) > 0
        and (r.physical_delta_y or 0) > 0
    ]


def spacing_from_regions(regions: list[UltrasoundRegion]) -> Optional[tuple[float, float]]:
    """Pixel spacing (row, col) in mm from the calibrated regions, or None.

    Preference: 2D-format regions, then the largest area (the main B-mode image rather than an inset).
    Dual-view images carry two equal calibrations, so the choice between them does not matter.
    """
    cands = calibrated_regions(regions)
    if not cands:
        return None
    best = max(cands, key=lambda r: (r.spatial_format == SPATIAL_2D, (r.x1 - r.x0 + 1) * (r.y1 - r.y0 + 1)))
    return (best.physical_delta_y * 10.0, best.physical_delta_x * 10.0)
