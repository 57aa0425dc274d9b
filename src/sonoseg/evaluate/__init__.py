"""Evaluation stage: per-image metrics (empty-mask aware), bootstrap summaries, post-processing,
flip TTA, overlays and the evaluation report. See :mod:`sonoseg.evaluate.metrics` for how empty
ground truth / predictions are scored."""

from sonoseg.evaluate.aggregate import EvalResult, aggregate, bootstrap_ci, evaluate_pairs, write_metrics
from sonoseg.evaluate.metrics import METRICS, binary_metrics, segmentation_metrics
from sonoseg.evaluate.overlay import contour_overlay, error_map, overlay_image, to_rgb_uint8
from sonoseg.evaluate.postprocess import postprocess
from sonoseg.evaluate.report import GalleryItem, select_gallery_stems, write_report
from sonoseg.evaluate.surface import hd95_assd
from sonoseg.evaluate.tta import tta_predict

__all__ = [
    "METRICS",
    "EvalResult",
    "GalleryItem",
    "aggregate",
    "binary_metrics",
    "bootstrap_ci",
    "contour_overlay",
    "error_map",
    "evaluate_pairs",
    "hd95_assd",
    "overlay_image",
    "postprocess",
    "segmentation_metrics",
    "select_gallery_stems",
    "to_rgb_uint8",
    "tta_predict",
    "write_metrics",
    "write_report",
]
