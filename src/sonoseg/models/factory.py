"""Build any registered network: ``create_model(name, ...)`` validates the arguments, loads local
pretrained weights and wraps the network in :class:`~sonoseg.models.padding.PadToMultiple`.

The builders come from :mod:`sonoseg.models.registry`, filled when ``sonoseg.models`` imports the
architecture modules (each registers itself).
"""

from __future__ import annotations

from typing import Any, Optional

from torch import nn

from sonoseg.errors import ConfigError
from sonoseg.models.registry import get_entry


def list_encoders() -> list[str]:
    """Encoder names accepted by the encoder-based (smp) models."""
    from sonoseg.models.smp_models import SUPPORTED_ENCODERS

    return list(SUPPORTED_ENCODERS)


def create_model(
    name: str,
    encoder: Optional[str] = None,
    in_channels: int = 1,
    classes: int = 1,
    encoder_weights: Optional[str] = None,
    classification: Optional[dict] = None,
    **kwargs: Any,
) -> nn.Module:
    """Build model ``name`` -> :class:`PadToMultiple`-wrapped network returning logits.

    ``classification={"classes": K, "dropout": p, "pooling": "avg"|"max"}`` adds an image-level class
    head on the encoder (smp ``aux_params``); the model then returns ``(mask_logits, class_logits)``
    (N x K). Only encoder-based (smp) models have one; others raise ConfigError.

    ``classes=1``: binary (one logit map, sigmoid); ``classes=K>1``: K logit maps incl.
    background (softmax). ``encoder`` applies to smp models only (default resnet34).
    ``encoder_weights``: None, a local file, or a name resolved from local caches (never
    downloaded; see :mod:`sonoseg.models.weights`). ``pad_mode`` ("constant" | "replicate" |
    "reflect") selects the padding; other kwargs go to the architecture (e.g. ``base_channels``,
    ``depth``, ``bilinear``, ``dropout`` for "unet"; ``decoder_channels`` for smp models).
    """
    from sonoseg.models.padding import PadToMultiple
    from sonoseg.models.weights import load_pretrained

    entry = get_entry(name)
    for label, value in (("in_channels", in_channels), ("classes", classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{label} must be a positive integer, got {value!r}")
    pad_mode = kwargs.pop("pad_mode", "constant")
    if entry.uses_encoder:
        encoder = encoder or entry.default_encoder
    elif encoder is not None:
        raise ConfigError(
            f"model {entry.name!r} has no exchangeable encoder (got encoder={encoder!r}); "
            "use an encoder-based model such as 'unet_smp'"
        )
    head = {}
    if classification:
        if not entry.supports_classification:
            raise ConfigError(
                f"model {entry.name!r} has no classification head; use an encoder-based model "
                "(e.g. 'fpn' or 'unet_smp') or remove model.classification"
            )
        k = classification.get("classes")
        if isinstance(k, bool) or not isinstance(k, int) or k < 2:
            raise ConfigError(f"classification needs at least 2 classes, got {k!r}")
        head = {"classification": dict(classification)}
    try:
        net = entry.builder(encoder=encoder, in_channels=in_channels, classes=classes, **head, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"model {entry.name!r}: invalid parameters ({exc})") from exc
    multiple = getattr(net, "size_multiple", None)
    if not isinstance(multiple, int) or multiple < 1:
        raise TypeError(f"builder of {entry.name!r} must return a module with an int size_multiple >= 1")
    load_pretrained(net, encoder_weights, encoder=encoder)
    model = PadToMultiple(
        net, multiple=multiple, min_size=getattr(net, "min_input_size", 0), mode=pad_mode
    )
    model.spec = {  # plain attribute (not in the state dict): how to rebuild this network
        "name": entry.name, "encoder": encoder, "in_channels": in_channels, "classes": classes,
        "params": dict(kwargs, pad_mode=pad_mode), "classification": head.get("classification"),
    }
    return model


def create_model_from_config(cfg, pretrained: bool = True) -> nn.Module:
    """Build from a :class:`sonoseg.config.ModelConfig` (``params`` become architecture kwargs).

    ``pretrained=False`` skips ``encoder_weights``: for rebuilding a trained model whose checkpoint
    holds every weight (no need for, e.g., the ``pretrained`` extra where it is deployed)."""
    return create_model(
        cfg.name, encoder=cfg.encoder, in_channels=cfg.in_channels, classes=cfg.classes,
        encoder_weights=cfg.encoder_weights if pretrained else None, classification=cfg.head_spec(),
        **dict(cfg.params),
    )


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (shared tensors counted once)."""
    seen: dict[int, int] = {}
    for p in model.parameters():
        if not trainable_only or p.requires_grad:
            seen[id(p)] = p.numel()
    return sum(seen.values())


def model_summary(model: nn.Module) -> str:
    """One line: architecture, encoder, channels, parameter count, padding multiple."""
    from sonoseg.models.padding import PadToMultiple, unwrap

    spec = getattr(model, "spec", None) or {}
    name = spec.get("name", type(unwrap(model)).__name__)
    enc = f" / {spec['encoder']}" if spec.get("encoder") else ""
    io = f", {spec['in_channels']} -> {spec['classes']} ch" if spec else ""
    pad = f", pads to x{model.multiple}" if isinstance(model, PadToMultiple) else ""
    return f"{name}{enc}{io}, {count_parameters(model) / 1e6:.2f} M parameters{pad}"
