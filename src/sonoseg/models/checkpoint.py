"""Checkpoint format: everything inference needs travels inside one file.

A checkpoint is a ``torch.save`` dict::

    {
      "format": "sonoseg-checkpoint", "version": 1,
      "config": SonosegConfig as a JSON-able dict (model + preprocess + train + ...),
      "model_state": state_dict of the model built by ``create_model_from_config(config.model)``,
      "epoch": int, "best_score": float | None, "metrics": {...},
      # training-only (absent in slim/shipped checkpoints):
      "optimizer_state", "scheduler_state", "scaler_state", "rng_state", "history",
      # shipped checkpoints may store conv/linear weights as int8 (see ``int8_state``):
      "weight_storage": "int8-per-channel", "weight_scales": {name: fp32 scale per output channel},
    }

``load_checkpoint`` decodes int8-stored weights back to fp32, so every caller sees a plain state dict.

Only plain tensors/containers are stored so ``torch.load(weights_only=True)`` works.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sonoseg.config import SonosegConfig
from sonoseg.errors import InputError
from sonoseg.models.weight_storage import (  # noqa: F401  (part of the checkpoint API)
    INT8_LEVELS, INT8_STORAGE, decode_int8_state, decode_stored_weights, half_state, int8_state,
)

FORMAT = "sonoseg-checkpoint"
VERSION = 1
# what every slim or shipped file keeps as is (beside its config, weights and metrics, which packaging may change)
KEPT = ("format", "version", "epoch", "best_score")


def save_checkpoint(path: str | Path, *, config: SonosegConfig, model_state: dict, epoch: int = 0,
                    best_score: float | None = None, metrics: dict | None = None, **training_state: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": config.model_dump(mode="json"),
        "model_state": {k: v.detach().cpu() for k, v in model_state.items()},
        "epoch": int(epoch),
        "best_score": None if best_score is None else float(best_score),
        "metrics": metrics or {},
        **training_state,
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # atomic: a crash never leaves a half-written checkpoint
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "checkpoint not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling/zip error means 'not a checkpoint'
        raise InputError(path, f"not a readable checkpoint ({type(exc).__name__})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputError(path, "not a sonoseg checkpoint (missing format marker)")
    return decode_stored_weights(payload, path)


def checkpoint_config(payload: dict) -> SonosegConfig:
    return SonosegConfig.model_validate(payload["config"])


def load_model(path: str | Path, map_location: str | torch.device = "cpu"):
    """Rebuild the model from a checkpoint: returns ``(model.eval(), SonosegConfig)``."""
    from sonoseg.models.factory import create_model_from_config

    payload = load_checkpoint(path, map_location)
    cfg = checkpoint_config(payload)
    model = create_model_from_config(cfg.model, pretrained=False)  # the checkpoint holds every weight
    model.load_state_dict(payload["model_state"])
    return model.eval(), cfg


def slim_checkpoint(src: str | Path, dst: str | Path, half: bool = False) -> Path:
    """Drop optimiser/RNG state (for shipping); optionally store weights as fp16 to halve the size."""
    payload = load_checkpoint(src)
    state = payload["model_state"]
    if half:
        state = half_state(state)
    keep = {k: payload[k] for k in (*KEPT, "config", "metrics") if k in payload}
    keep["model_state"] = state
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(keep, dst)
    return dst
