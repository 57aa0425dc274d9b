"""``EvaluateOptions``: everything ``evaluate_model`` is told besides the dataset, with its defaults
and checks in one place. ``sonoseg evaluate`` builds one from its flags, studies and scripts build one
directly; a new evaluation setting is a field here, its flag, and the code that reads it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from sonoseg.errors import ConfigError

DISTANCE_UNITS = ("auto", "mm", "px")


@dataclass(frozen=True, kw_only=True)
class EvaluateOptions:
    """What to score and how. Postprocessing fields left None keep the model's own setting."""

    model: Optional[str | Path] = None  # checkpoint (.pt) or .onnx; None: the shipped model
    split_file: Optional[str | Path] = None  # CSV from `sonoseg split`; None: every image with a mask
    split: str = "test"  # which part of split_file is scored
    out_dir: str | Path = "eval"
    backend: str = "auto"
    threads: Optional[int] = None
    keep_largest: Optional[bool] = None
    min_size: Optional[int] = None
    fill_holes: Optional[bool] = None
    tta: Optional[Sequence[str]] = None
    tentative_outline: Optional[bool] = None  # None: the model's setting (sonoseg.infer.predictor)
    n_boot: int = 1000  # bootstrap resamples for the 95% CIs (0: no CIs)
    distance_units: str = "auto"  # HD95/ASSD: auto (mm when every image has a spacing) | mm | px
    spacing: Optional[str | tuple[float, ...]] = None  # ROW_MM[,COL_MM] over every image's own spacing
    measurements: bool = False  # also compare measurements with the ground truth's (Bland-Altman)
    config: object = None  # YAML path or SonosegConfig: its measure / postprocess sections
    contour: Optional[str] = None
    biometry: Optional[bool] = None
    reference: Sequence[str] = ()  # COL[:QUANTITY] labels.csv columns to compare with; implies measurements
    report: bool = True  # report.md/.html with its gallery (studies score many sets and skip it)

    def __post_init__(self) -> None:
        if self.distance_units not in DISTANCE_UNITS:
            raise ConfigError(f"distance units {self.distance_units!r} is not one of {' | '.join(DISTANCE_UNITS)}")
        if self.n_boot < 0:
            raise ConfigError(f"n_boot {self.n_boot} must be >= 0 (bootstrap resamples)")
        if self.min_size is not None and self.min_size < 0:
            raise ConfigError(f"min_size {self.min_size} must be >= 0 pixels")
        if not self.split:
            raise ConfigError("split must name a part of the split file (train, val, test ...)")
        if isinstance(self.reference, str):
            raise ConfigError("reference must be a list of COL[:QUANTITY] specs, not one string")
