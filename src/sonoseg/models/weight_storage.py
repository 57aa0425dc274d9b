"""How a checkpoint's weights are stored: fp16 or int8 per output channel for shipping, fp32 in memory.

Kept apart from the checkpoint file format (:mod:`sonoseg.models.checkpoint`) so that the pretrained
weight loader can decode a shipped checkpoint's weights without importing the model factory.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sonoseg.errors import InputError


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


def decode_stored_weights(payload: dict, path: str | Path) -> dict:
    """``payload`` with int8-stored weights (``weight_storage``) decoded to a plain fp32 state dict;
    unchanged when it has none. Every reader of checkpoints goes through here."""
    storage = payload.pop("weight_storage", None)
    if storage is not None:
        if storage != INT8_STORAGE:
            raise InputError(path, f"unknown weight storage {storage!r} (newer sonoseg?)")
        payload["model_state"] = decode_int8_state(payload["model_state"], payload.pop("weight_scales", {}))
    return payload
