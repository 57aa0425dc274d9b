"""Segmentation networks: the classic U-Net and smp architectures x encoders, one factory.

``create_model(name, encoder=None, in_channels=1, classes=1, encoder_weights=None, **params)``
returns a network that takes N x C x H x W inputs of any H, W and returns logits of the same size.
"""

# each architecture module registers its builders on import (the registry imports none of them back)
import sonoseg.models.monai3d  # noqa: F401
import sonoseg.models.smp_models  # noqa: F401
from sonoseg.models.ensemble import ProbabilityMeanEnsemble
from sonoseg.models.factory import (
    count_parameters,
    create_model,
    create_model_from_config,
    list_encoders,
    model_summary,
)
from sonoseg.models.padding import PAD_MODES, PadToMultiple, unwrap
from sonoseg.models.registry import list_models, register_model
from sonoseg.models.shipped import default_model_path, default_recipe
from sonoseg.models.unet import UNet
from sonoseg.models.weights import LoadReport, load_pretrained, resolve_named_weights

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
