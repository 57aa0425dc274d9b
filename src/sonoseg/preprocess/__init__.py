"""Preprocessing: grayscale -> ROI crop -> uint8 -> median -> CLAHE -> normalise -> fixed grid,
with the exact inverse mapping (GridTransform) from the model grid back to the original pixels."""

from sonoseg.preprocess.config import PreprocessConfig
from sonoseg.preprocess.geometry import GridTransform, center_crop, letterbox, resize, resize_nearest
from sonoseg.preprocess.pipeline import Preprocessed, Preprocessor, preprocess_image, preprocess_mask
from sonoseg.preprocess.roi import find_roi, imaging_area_mask, roi_from_image, roi_from_us_regions
from sonoseg.preprocess.steps import apply_clahe, median_filter, normalize, to_grayscale, to_uint8

__all__ = [
    "GridTransform",
    "PreprocessConfig",
    "Preprocessed",
    "Preprocessor",
    "apply_clahe",
    "center_crop",
    "find_roi",
    "imaging_area_mask",
    "letterbox",
    "median_filter",
    "normalize",
    "preprocess_image",
    "preprocess_mask",
    "resize",
    "resize_nearest",
    "roi_from_image",
    "roi_from_us_regions",
    "to_grayscale",
    "to_uint8",
]
