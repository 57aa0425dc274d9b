"""Where the shipped models, sample DICOMs and calibration frames live inside the package, and the
shipped default model's recipe (what ``sonoseg train`` uses when no config is given)."""

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


def default_recipe() -> dict:
    """The shipped default model's training config as a plain dict, with the machine- and
    dataset-specific fields cleared (data root, split file, cache folder, thread count), so that a
    ``sonoseg train DATASET`` without ``--config`` trains that recipe on the user's data."""
    import torch

    payload = torch.load(default_model_path(), map_location="cpu", weights_only=False)
    cfg = dict(payload["config"])
    cfg["data"] = {k: v for k, v in cfg.get("data", {}).items() if k not in ("root", "split_file", "cache_dir")}
    cfg["train"] = {k: v for k, v in cfg.get("train", {}).items() if k != "threads"}
    return cfg
