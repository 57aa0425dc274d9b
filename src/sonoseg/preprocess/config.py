"""The one object that describes preprocessing. It is saved inside every checkpoint/export so that
inference reproduces training exactly."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class PreprocessConfig(BaseModel):
    """Order of steps (fixed): to grayscale -> ROI crop -> to uint8 -> 3x3 median -> CLAHE
    -> intensity normalisation (float32) -> resize (letterbox or centre crop) to ``size``.

    - grayscale: BT.601 luminance for RGB; the Y channel for still-encoded YBR.
    - roi: "none" keeps the frame; "dicom" crops to the largest tissue US region when the file has
      one; "auto" additionally finds the scan sector by image analysis when it has none (seed 004
      §3.3). The crop offset is recorded in the GridTransform, so masks map back exactly.
    - to uint8: 8-bit data is kept as is; 16-bit / float data is min-max scaled per image (inside
      the ROI, so scanner UI does not set the range).
    - clahe_tile_grid is (rows, cols) like ``size`` (OpenCV's tileGridSize is the other way round).
    - resize: "letterbox" keeps the aspect ratio and pads with ``pad_value`` (centred); "crop"
      scales to cover the grid and cuts the centre (seed 000: the central square).
    """

    model_config = ConfigDict(extra="forbid")

    grayscale: bool = True
    roi: Literal["none", "dicom", "auto"] = "dicom"  # dicom: US regions when present; auto: + image analysis
    median_kernel: int = Field(3, ge=0, description="odd kernel size; 0 or 1 disables")
    clahe: bool = True
    clahe_clip_limit: float = Field(2.0, gt=0)
    clahe_tile_grid: tuple[int, int] = (8, 8)
    normalize: Literal["minmax", "zscore", "percentile"] = "minmax"
    percentile_window: tuple[float, float] = (1.0, 99.0)
    size: tuple[int, int] = (256, 256)  # (height, width) of the model grid
    resize_mode: Literal["letterbox", "crop"] = "letterbox"
    pad_value: float = 0.0
