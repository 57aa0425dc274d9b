"""``ExportOptions``: the settings of ``export_model``, with defaults and checks in one place
(``sonoseg export`` builds one from its flags). A bad value fails here, before minutes of exporting
and quantising. ``export_onnx`` alone takes :class:`sonoseg.runtime.onnx_export.OnnxOptions`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from sonoseg.errors import ConfigError
from sonoseg.runtime.onnx_export import DEFAULT_OPSET, check_onnx_settings
from sonoseg.runtime.quantize import CALIBRATION_METHODS, SCHEMES

FORMATS = ("onnx", "onnx-int8", "torchscript")


@dataclass(frozen=True, kw_only=True)
class ExportOptions:
    """Where to write, which formats, and the gate each format must pass against PyTorch."""

    out_dir: str | Path
    formats: Sequence[str] = FORMATS
    tolerance: float = 0.01  # largest allowed validation Dice drop versus PyTorch
    min_agreement: float = 0.97  # mean per-image Dice of a format's masks vs PyTorch's
    min_worst_agreement: float = 0.5  # ... and its worst image
    threads: Optional[int] = None
    stem: str = "model"  # STEM.onnx, STEM.int8.onnx, STEM.ts
    opset: int = DEFAULT_OPSET
    exporter: str = "auto"  # ONNX exporter: auto (classic, then dynamo) | classic | dynamo
    scheme: Optional[str] = None  # int8 scheme; None: the one exact on this CPU
    calibrate_method: str = "minmax"

    def __post_init__(self) -> None:
        formats = tuple(dict.fromkeys(self.formats))
        bad = [f for f in formats if f not in FORMATS]
        if bad or not formats:
            raise ConfigError(f"unknown export format(s) {', '.join(bad) or '(none)'}; choose from {', '.join(FORMATS)}")
        object.__setattr__(self, "formats", formats)  # each format once, in the order asked
        check_onnx_settings(self.opset, self.exporter)
        if self.scheme is not None and self.scheme not in SCHEMES:
            raise ConfigError(f"int8 scheme {self.scheme!r} is not one of {', '.join(SCHEMES)}")
        if self.calibrate_method not in CALIBRATION_METHODS:
            raise ConfigError(f"calibration {self.calibrate_method!r} is not one of {', '.join(CALIBRATION_METHODS)}")
        if not self.stem or "/" in self.stem or "\\" in self.stem:
            raise ConfigError(f"file stem {self.stem!r} must be a plain file name")
