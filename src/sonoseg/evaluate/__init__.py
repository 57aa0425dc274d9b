"""The evaluation job (``sonoseg evaluate``), above ``infer``: runs the predictor over a dataset split
and scores it: per-image metrics (:mod:`sonoseg.metrics`), bootstrap summaries, measurement agreement,
class reports, operating points, 3D volumes and the evaluation report. See
:mod:`sonoseg.metrics.segmentation` for how empty ground truth / predictions are scored."""

from sonoseg.evaluate.aggregate import EvalResult, aggregate, bootstrap_ci, evaluate_pairs, write_metrics
from sonoseg.evaluate.report import GalleryItem, select_gallery_stems, write_report
from sonoseg.infer.postprocess import postprocess
from sonoseg.infer.tta import tta_predict
from sonoseg.metrics.segmentation import METRICS, binary_metrics, segmentation_metrics
from sonoseg.metrics.surface import hd95_assd
from sonoseg.outputs.overlay import contour_overlay, error_map, overlay_image, to_rgb_uint8

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
