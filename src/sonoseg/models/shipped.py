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
    """The shipped default model's training recipe as a plain dict, with the machine- and
    dataset-specific fields cleared (data root, split file, cache folder, thread count), so that a
    ``sonoseg train DATASET`` without ``--config`` trains that recipe on the user's data.

    The recipe is the from-scratch config stored at ship time (``recipe``; the checkpoint's own config
    can be a warm-restart continuation), else the checkpoint's config. What belongs to the trained model,
    not to the recipe, is dropped: its version, its int8 fp32 layers (chosen per model on validation)
    and its class names (the user's labels.csv names the classes)."""
    import torch

    payload = torch.load(default_model_path(), map_location="cpu", weights_only=False)
    cfg = dict(payload.get("recipe") or payload["config"])
    cfg["data"] = {k: v for k, v in cfg.get("data", {}).items() if k not in ("root", "split_file", "cache_dir")}
    cfg["train"] = {k: v for k, v in cfg.get("train", {}).items() if k != "threads"}
    model = {k: v for k, v in cfg.get("model", {}).items() if k not in ("version", "int8_keep_float")}
    if isinstance(model.get("classification"), dict):
        model["classification"] = {k: v for k, v in model["classification"].items() if k != "names"}
    cfg["model"] = model
    return cfg
