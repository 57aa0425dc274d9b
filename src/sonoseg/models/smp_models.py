"""The nine architectures x encoders of seed 004, built by segmentation_models_pytorch (smp).

Registry names -> smp classes::

    unet_smp       smp.Unet            U-Net decoder on a pretrained-style encoder
    unetplusplus   smp.UnetPlusPlus    nested dense skip paths
    manet          smp.MAnet           multi-scale attention
    linknet        smp.Linknet         light additive skips
    fpn            smp.FPN             feature pyramid
    pspnet         smp.PSPNet          pyramid pooling (encoder_depth 3, stride 8)
    pan            smp.PAN             pyramid attention (dilated encoder, stride 16)
    deeplabv3      smp.DeepLabV3       ASPP (dilated encoder, stride 8)
    deeplabv3plus  smp.DeepLabV3Plus   ASPP + decoder (dilated encoder, stride 16)

Encoders (:data:`SUPPORTED_ENCODERS`): the seed's ResNet-18/34/50/101, EfficientNet-b0..b7 (smp's
``efficientnet-bN``, the EfficientNet-PyTorch port), MobileNetV2 (``mobilenet_v2``) and EfficientNet-Lite0
(``timm-tf_efficientnet_lite0``: no squeeze-excite, ReLU6, int8-friendly; pretrained via :mod:`.pretrained_lite`).

smp is imported only when a model is built (it pulls in timm/torchvision; call sites that only
list models stay fast). smp is always called with ``encoder_weights=None`` -- pretrained weights
come from local files through :mod:`sonoseg.models.weights`, so nothing is ever downloaded.
Extra keyword arguments (``decoder_channels``, ``encoder_depth``, ``encoder_output_stride``,
``decoder_pyramid_channels``, ...) go to the smp class unchanged; ``activation`` is refused because
sonoseg models always return plain logits, and ``aux_params`` is set from ``classification`` (the
image-level class head; the network then returns ``(mask_logits, class_logits)``).

Input sizes: the smp network needs H, W divisible by ``encoder.output_stride`` (what smp's own
``check_input_shape`` tests; 32 by default, 16/8 for the dilated PAN/DeepLab/PSPNet encoders).
Two size floors found by probing smp 0.6.0: PAN's pyramid-attention block max-pools the deepest
map three more times, so that map must be >= 8 px (input >= 8 * stride); EfficientNet's static
"same" padding fails on maps under 2 px at stride 8, so every smp model gets at least 32 px.
"""

from __future__ import annotations

import inspect

from torch import nn

from sonoseg.errors import ConfigError
from sonoseg.models.registry import register_model

SUPPORTED_ENCODERS: tuple[str, ...] = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    *(f"efficientnet-b{i}" for i in range(8)),
    "mobilenet_v2",
    "timm-tf_efficientnet_lite0",  # ImageNet weights via the `pretrained` extra (models/pretrained_lite.py)
)
DEFAULT_ENCODER = "resnet34"  # smp's default; the best ResNet in seed 004

SMP_ARCHITECTURES: dict[str, str] = {
    "unet_smp": "Unet",
    "unetplusplus": "UnetPlusPlus",
    "manet": "MAnet",
    "linknet": "Linknet",
    "fpn": "FPN",
    "pspnet": "PSPNet",
    "pan": "PAN",
    "deeplabv3": "DeepLabV3",
    "deeplabv3plus": "DeepLabV3Plus",
}

_REFUSED_KWARGS = {
    "aux_params": "use model.classification (create_model(classification=...))",
    "activation": "sonoseg models return logits; losses and inference apply sigmoid/softmax",
    "encoder_name": "use the encoder argument / model.encoder",
    "encoder_weights": "use the encoder_weights argument / model.encoder_weights",
}

SMP_MIN_INPUT = 32


def validate_encoder(encoder: str) -> str:
    """Return ``encoder`` if supported, else raise ConfigError listing the options."""
    if encoder not in SUPPORTED_ENCODERS:
        raise ConfigError(
            f"unknown encoder {encoder!r}; supported encoders: {', '.join(SUPPORTED_ENCODERS)}"
        )
    return encoder


def min_input_size(arch: str, output_stride: int) -> int:
    if arch == "pan":
        return 8 * output_stride
    return max(SMP_MIN_INPUT, output_stride)


def _init_parameters(cls) -> set[str]:
    params = inspect.signature(cls.__init__).parameters.values()
    skip = {"self", "encoder_name", "encoder_weights", "in_channels", "classes"}
    return {
        p.name for p in params
        if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in skip
    } - set(_REFUSED_KWARGS)


def build_smp(arch: str, encoder: str, in_channels: int, classes: int, classification: dict | None = None,
              **kwargs) -> nn.Module:
    """Build smp ``arch`` (a registry name) with random weights; sets ``size_multiple``/``min_input_size``.
    ``classification`` ({classes, dropout, pooling}) becomes smp's ``aux_params`` (logits, no activation)."""
    validate_encoder(encoder)
    for key, why in _REFUSED_KWARGS.items():
        if key in kwargs and not (key == "activation" and kwargs[key] is None):
            raise ConfigError(f"{arch}: parameter {key!r} is not supported ({why})")
    kwargs.pop("activation", None)
    from sonoseg._compat import ensure_torchvision

    ensure_torchvision()
    import segmentation_models_pytorch as smp

    cls = getattr(smp, SMP_ARCHITECTURES[arch])
    # smp hands unknown keywords to the encoder, where non-timm encoders drop them silently:
    # check them here so a typo in model.params is an error, not a silent default
    allowed = _init_parameters(cls)
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ConfigError(
            f"{arch}: unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(allowed))}"
        )
    if classification:
        kwargs["aux_params"] = {
            "classes": int(classification["classes"]), "dropout": float(classification.get("dropout") or 0.0),
            "pooling": classification.get("pooling", "avg"), "activation": None,
        }
    try:
        net = cls(
            encoder_name=encoder, encoder_weights=None, in_channels=in_channels, classes=classes,
            **kwargs,
        )
    except (TypeError, ValueError, KeyError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{arch} with encoder {encoder}: {msg}") from exc
    if encoder == "timm-tf_efficientnet_lite0":
        from sonoseg.models.pretrained_lite import make_tf_faithful

        make_tf_faithful(net.encoder)
    stride = int(net.encoder.output_stride)
    net.size_multiple = stride
    net.min_input_size = min_input_size(arch, stride)
    return net


def _register(name: str) -> None:
    @register_model(name, uses_encoder=True, default_encoder=DEFAULT_ENCODER,
                    description=f"smp.{SMP_ARCHITECTURES[name]}", supports_classification=True)
    def _build(encoder: str, in_channels: int, classes: int, classification: dict | None = None, **kwargs) -> nn.Module:
        return build_smp(name, encoder, in_channels, classes, classification, **kwargs)


for _name in SMP_ARCHITECTURES:
    _register(_name)
