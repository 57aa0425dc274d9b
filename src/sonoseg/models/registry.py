"""The name -> builder registry. Each architecture module registers its builders with
:func:`register_model` when it is imported (``sonoseg.models`` imports them all, as smp does); this
module imports none of them back. ``create_model`` is in :mod:`sonoseg.models.factory`.

A builder is ``fn(encoder, in_channels, classes, **params) -> nn.Module`` returning the bare
network (logits out) with an int attribute ``size_multiple`` (H and W must be divisible by it)
and optionally ``min_input_size``. :func:`~sonoseg.models.factory.create_model` validates the arguments, loads local
pretrained weights and wraps the network in :class:`~sonoseg.models.padding.PadToMultiple`, so
every model it returns takes inputs of any spatial size and returns logits of the same size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from torch import nn

from sonoseg.errors import ConfigError

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Builder
    uses_encoder: bool
    default_encoder: Optional[str]
    description: str
    supports_classification: bool = False  # builder accepts ``classification={classes, dropout, pooling}``


_REGISTRY: dict[str, ModelEntry] = {}
ALIASES = {"unet++": "unetplusplus", "deeplabv3+": "deeplabv3plus", "smp_unet": "unet_smp"}


def register_model(
    name: str, *, uses_encoder: bool = False, default_encoder: Optional[str] = None,
    description: str = "", supports_classification: bool = False,
) -> Callable[[Builder], Builder]:
    """Decorator: register ``fn`` as the builder of model ``name`` (lower-case, unique)."""
    key = name.strip().lower()

    def deco(fn: Builder) -> Builder:
        if key in _REGISTRY and _REGISTRY[key].builder is not fn:
            raise ValueError(f"model {key!r} is already registered")
        _REGISTRY[key] = ModelEntry(key, fn, uses_encoder, default_encoder, description or fn.__doc__ or "",
                                    supports_classification)
        return fn

    return deco


def list_models() -> list[str]:
    """Registered model names (the values ``ModelConfig.name`` accepts)."""
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; available models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[key]
