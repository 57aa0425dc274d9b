"""Segmentation networks: the classic U-Net and smp architectures x encoders, one factory.

``create_model(name, encoder=None, in_channels=1, classes=1, encoder_weights=None, **params)``
returns a network that takes N x C x H x W inputs of any H, W and returns logits of the same size.
"""

from sonoseg.models.ensemble import ProbabilityMeanEnsemble
from sonoseg.models.padding import PAD_MODES, PadToMultiple, unwrap
from sonoseg.models.registry import (
    count_parameters,
    create_model,
    create_model_from_config,
    list_encoders,
    list_models,
    model_summary,
    register_model,
)
from sonoseg.models.shipped import default_model_path, default_recipe
from sonoseg.models.unet import UNet
from sonoseg.models.weights import LoadReport, load_pretrained, resolve_named_weights
import sonoseg.models.smp_models  # noqa: E402,F401  (registers the smp architectures)

__all__ = [
    "PAD_MODES",
    "LoadReport",
    "PadToMultiple",
    "ProbabilityMeanEnsemble",
    "UNet",
    "count_parameters",
    "create_model",
    "create_model_from_config",
    "default_model_path",
    "default_recipe",
    "list_encoders",
    "list_models",
    "load_pretrained",
    "model_summary",
    "register_model",
    "resolve_named_weights",
    "unwrap",
]
