"""The options of a predict run in one typed place, with their defaults and their checks.

``predict_inputs(inputs, out_dir, PredictOptions(...))``: the CLI builds one from its flags, the
service and the listener from their settings, a notebook directly. A field left None takes the model's
own setting (stored with it, chosen on its validation split); a given value wins over the model and
over a ``config`` file. A new option is one field here, one CLI flag and the code that reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from sonoseg.errors import ConfigError

TTA_FLIPS = ("h", "v")
CONTOURS = ("edge", "centre")


def _unit(name: str, value: Optional[float]) -> None:
    if value is not None and not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{name} must be between 0 and 1, got {value}")


@dataclass(frozen=True)
class ModelOptions:
    """How a model is loaded and how its masks are cut: what ``Predictor.from_path`` takes."""

    backend: str = "auto"  # auto | torch | torch-compile | onnx | onnx-int8 (infer.backend_choice)
    threads: Optional[int] = None  # None: the machine's default (sonoseg.system.default_threads)
    threshold: Optional[float] = None  # foreground probability cut-off
    keep_largest: Optional[bool] = None
    min_size: Optional[int] = None  # pixels
    fill_holes: Optional[bool] = None
    tta: Optional[tuple[str, ...]] = None  # flips "h"/"v"; () = none
    tentative_outline: Optional[bool] = None  # outline where the class head finds a lesion the mask missed

    def __post_init__(self) -> None:
        _unit("threshold", self.threshold)
        if self.min_size is not None and int(self.min_size) < 0:
            raise ConfigError(f"min_size must be 0 or more pixels, got {self.min_size}")
        if self.tta is not None:
            tta = (self.tta,) if isinstance(self.tta, str) else tuple(self.tta)
            bad = [t for t in tta if t not in TTA_FLIPS]
            if bad:
                raise ConfigError(f"tta takes the flips h and v, not {bad[0]!r}")
            object.__setattr__(self, "tta", tta)


@dataclass(frozen=True)
class PredictOptions(ModelOptions):
    """One predict run (``sonoseg predict``, the service's jobs, the listener's studies)."""

    model: Optional[Path] = None  # checkpoint .pt, .onnx, .ts; None: the shipped default model
    config: Any = None  # YAML path or SonosegConfig: its measure/postprocess sections over the model's
    batch_size: int = 8  # frames per inference batch (cine is streamed)
    write_seg: bool = True  # DICOM inputs: a DICOM SEG (never for out-of-scope inputs)
    overlay_sc: bool = False  # DICOM inputs: the overlay as a DICOM Secondary Capture too
    video: bool = False  # cine: an overlay video (animated WebP) too
    domain: bool = True  # flag inputs unlike the model's training images (when it has statistics)
    resume: bool = False  # reuse inputs a previous run in the output folder finished (its journal)
    spacing: Union[str, tuple[float, float], None] = None  # ROW_MM[,COL_MM] over every input's own
    spacing_file: Optional[Path] = None  # CSV file -> spacing (data.spacing_table)
    contour: Optional[str] = None  # edge | centre; None: config/model
    biometry: Optional[bool] = None  # HC/BPD/OFD of the largest structure
    ellipse_fit: Optional[bool] = None  # replace each structure by its fitted ellipse
    temporal_window: Optional[int] = None  # cine: average probabilities over this many frames
    suspicious_threshold: Optional[float] = None  # P(the model's suspicious class) that flags a found lesion

    def __post_init__(self) -> None:
        super().__post_init__()
        from sonoseg.io.spacing import parse_spacing

        _unit("suspicious_threshold", self.suspicious_threshold)
        if self.model is not None:
            object.__setattr__(self, "model", Path(self.model))
        if int(self.batch_size) < 1:
            raise ConfigError(f"batch_size must be 1 or more, got {self.batch_size}")
        if self.temporal_window is not None and int(self.temporal_window) < 1:
            raise ConfigError(f"temporal_window must be 1 or more frames, got {self.temporal_window}")
        if self.contour is not None and self.contour not in CONTOURS:
            raise ConfigError(f"contour must be one of {', '.join(CONTOURS)}, not {self.contour!r}")
        if self.spacing is not None:
            object.__setattr__(self, "spacing", parse_spacing(self.spacing))

    @property
    def measure(self) -> dict:
        """The MeasureOptions overrides that were given (infer.frames)."""
        given = {"contour": self.contour, "biometry": self.biometry, "ellipse_fit": self.ellipse_fit}
        return {k: v for k, v in given.items() if v is not None}
