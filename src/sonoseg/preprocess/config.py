"""The one object that describes preprocessing. It is saved inside every checkpoint/export so that
inference reproduces training exactly."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field


class PreprocessConfig(BaseModel):
    """Order of steps (fixed): to grayscale -> ROI crop -> to uint8 -> 3x3 median -> CLAHE
    -> intensity normalisation (float32) -> resize (letterbox or centre crop) to ``size``."""

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
