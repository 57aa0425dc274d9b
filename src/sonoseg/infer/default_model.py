"""Where the shipped default model and sample data live inside the package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from sonoseg.errors import SonosegError

DEFAULT_MODEL_NAME = "busi_default.pt"


def assets_dir() -> Path:
    return Path(str(resources.files("sonoseg") / "assets"))


def default_model_path() -> Path:
    p = assets_dir() / "models" / DEFAULT_MODEL_NAME
    if not p.is_file():
        raise SonosegError(f"{p}: shipped default model missing from this installation")
    return p


def sample_dicom_dir() -> Path:
    return assets_dir() / "samples"
