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

FORMAT = "sonoseg-checkpoint"
VERSION = 1


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


def decode_stored_weights(payload: dict, path: str | Path) -> dict:
    """``payload`` with int8-stored weights (``weight_storage``) decoded to a plain fp32 state dict;
    unchanged when it has none. Every reader of checkpoints goes through here."""
    storage = payload.pop("weight_storage", None)
    if storage is not None:
        if storage != INT8_STORAGE:
            raise InputError(path, f"unknown weight storage {storage!r} (newer sonoseg?)")
        payload["model_state"] = decode_int8_state(payload["model_state"], payload.pop("weight_scales", {}))
    return payload


def checkpoint_config(payload: dict) -> SonosegConfig:
    return SonosegConfig.model_validate(payload["config"])


def load_model(path: str | Path, map_location: str | torch.device = "cpu"):
    """Rebuild the model from a checkpoint: returns ``(model.eval(), SonosegConfig)``."""
    from sonoseg.models import create_model_from_config

    payload = load_checkpoint(path, map_location)
    cfg = checkpoint_config(payload)
    model = create_model_from_config(cfg.model, pretrained=False)  # the checkpoint holds every weight
    model.load_state_dict(payload["model_state"])
    return model.eval(), cfg


def half_state(state: dict) -> dict:
    """fp16 copies of the floating-point tensors (shipping size halves; loading casts back to fp32)."""
    return {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}


INT8_STORAGE = "int8-per-channel"
# +-126, not +-127: CPUs without VNNI re-quantise weights to 7 bits at int8 inference (onnxruntime's
# reduce_range: scale = max / 63.5). With +-127 that grid is exactly twice the stored one, every odd stored
# value falls on a rounding tie and the 7-bit error doubles (v3's int8 masks vs fp32 on val: mean 0.969,
# worst 0.29 against 0.984 / 0.83 from fp16 weights); with +-126 the grids do not line up (0.982 / 0.71).
INT8_LEVELS = 126


def int8_state(state: dict, min_numel: int = 256, levels: int = INT8_LEVELS) -> tuple[dict, dict]:
    """Shipping storage at about a quarter of fp32: conv/linear weights (>= 2 dims, >= ``min_numel``
    values) as symmetric int8 (+-``levels``) with one fp32 scale per output channel, everything else fp16.

    Weight-only and decoded to fp32 on load (``decode_int8_state``), so it changes no code path, only the
    weights: a model shipped this way must be evaluated as decoded (its numbers are the shipped numbers).
    Returns ``(state, scales)``.
    """
    out, scales = {}, {}
    for k, v in state.items():
        if v.is_floating_point() and v.dim() >= 2 and v.numel() >= min_numel:
            w = v.detach().float().reshape(v.shape[0], -1)
            scale = w.abs().amax(dim=1).clamp_min(1e-12) / float(levels)
            out[k] = torch.round(w / scale[:, None]).clamp(-levels, levels).to(torch.int8).reshape(v.shape)
            scales[k] = scale
        else:
            out[k] = v.half() if v.is_floating_point() else v
    return out, scales


def decode_int8_state(state: dict, scales: dict) -> dict:
    """Inverse of ``int8_state``: fp32 weights ``q * scale`` (per output channel); fp16 tensors as stored."""
    out = dict(state)
    for k, scale in scales.items():
        q = state[k]
        out[k] = q.float() * scale.float().reshape(-1, *([1] * (q.dim() - 1)))
    return out


def slim_checkpoint(src: str | Path, dst: str | Path, half: bool = False) -> Path:
    """Drop optimiser/RNG state (for shipping); optionally store weights as fp16 to halve the size."""
    payload = load_checkpoint(src)
    state = payload["model_state"]
    if half:
        state = half_state(state)
    keep = {k: payload[k] for k in ("format", "version", "config", "epoch", "best_score", "metrics") if k in payload}
    keep["model_state"] = state
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(keep, dst)
    return dst
