"""Which recipe ``sonoseg train`` starts from, and the one banner line that says so.

- no ``--config``: the shipped default model's recipe (:func:`sonoseg.models.default_recipe`), or the
  3D recipe for a folder of volumes;
- a **task config** (a YAML without a ``model`` section, e.g. ``configs/fetal_head_biometry.yaml``
  with only ``measure`` / ``postprocess``): layered over the default recipe, key by key, so a user's
  task keeps the recipe that was tuned and adds what the task needs; its sections travel in the
  checkpoint and apply at predict;
- a full recipe (a YAML with a ``model`` section, e.g. ``configs/busi_v3.yaml``): taken as written.

The banner is built from the final config (after ``--epochs``/``--set``), so it states what runs.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Optional

# 3D default when the dataset holds volumes and no --config is given (configs/ct_organs_fit.yaml is the tuned one)
VOLUME_RECIPE = {"volume": {}, "model": {"name": "unet3d"}, "augment": {"enabled": False}, "data": {"batch_size": 2},
                 "train": {"loss": "dice_ce", "epochs": 50, "scheduler": "cosine", "lr": 3e-3, "early_stopping_patience": None}}


def is_task_config(path: str | Path) -> bool:
    """A config without a ``model`` (or ``volume``) section describes a task, not a recipe."""
    from sonoseg.config import read_config_file

    data = read_config_file(path)
    return "model" not in data and "volume" not in data


def choose_base(config: Optional[Path], overrides: list[str], volumes: bool, resume) -> tuple[Optional[dict], str]:
    """(base dict for :func:`sonoseg.config.load_config`, what it is: "" | "volume" | "default" | "task")."""
    if resume is not None:  # a resumed run keeps the config stored in it
        return None, ""
    if config is None and volumes:
        return copy.deepcopy(VOLUME_RECIPE), "volume"
    if config is not None and not is_task_config(config):
        return None, ""
    from sonoseg.models import default_recipe

    base = default_recipe()
    if any(o.startswith("model.name=") for o in overrides):
        base["model"] = {}  # another architecture: the recipe's encoder and params do not apply
    return base, "default" if config is None else "task"


def banner(kind: str, cfg, config: Optional[Path] = None) -> Optional[str]:
    """One line naming the recipe that trains, with the epochs actually used."""
    m, epochs = cfg.model, cfg.train.epochs
    arch = f"{m.name}" + (f" + {m.encoder}" if m.encoder else "")
    if kind == "volume":
        return f"no --config: a volume dataset, training the 3D recipe ({arch}, {epochs} epochs, DiceCE, 3 mm, abdomen window)"
    if kind == "default":
        return f"no --config: training the shipped default model's recipe ({arch}, {epochs} epochs)"
    if kind == "task":
        sections = ", ".join(k for k in ("preprocess", "augment", "data", "train", "postprocess", "measure")
                             if k in _sections(config))
        return (f"{config} has no model section: the shipped default model's recipe ({arch}, {epochs} epochs) "
                f"with its {sections or 'settings'}; these travel in the model file")
    return None


def _sections(config: Optional[Path]) -> set:
    from sonoseg.config import read_config_file

    return set(read_config_file(config)) if config is not None else set()
