"""Pick the compute device: CUDA, then Apple MPS, then CPU (or what the user asked for)."""

from __future__ import annotations

import torch

from sonoseg.errors import ConfigError


def select_device(spec: str = "auto", local_rank: int | None = None) -> torch.device:
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank or 0)
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {spec!r} requested but CUDA is not available")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {spec!r} requested but MPS is not available")
    if dev.type == "cuda" and local_rank is not None and dev.index is None:
        dev = torch.device("cuda", local_rank)
    return dev
