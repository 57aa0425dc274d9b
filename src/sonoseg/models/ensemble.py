"""Several trained networks as one model: the mean of their probabilities (nnU-Net's fold ensemble).

Registered as ``"ensemble"``; ``params.members`` lists each member's spec (``name``, ``encoder``,
``in_channels``, ``classes``, ``params``) and the state dict holds ``members.<i>.*``. Because an
ensemble is an ordinary registered model inside an ordinary checkpoint, predict, evaluate, export
(ONNX/int8/TorchScript) and benchmark use it unchanged. Build one from trained checkpoints with
:func:`sonoseg.train.ensemble.ensemble_checkpoints` (``sonoseg ensemble``).

Why probabilities, not logits: averaging probabilities is what nnU-Net does and keeps one
overconfident member from outvoting the others. The output is still a logit map (the model
contract): ``logit(mean sigmoid)`` for one class, ``log(mean softmax)`` for several, so
thresholding at 0.5 / argmax on the output equals thresholding / argmax on the mean probability.
"""

from __future__ import annotations

import math

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sonoseg.errors import ConfigError
from sonoseg.models.registry import register_model

_EPS = 1e-6  # keeps logit() finite when every member is certain


class ProbabilityMeanEnsemble(nn.Module):
    """``forward(x)`` = logit of the mean member probability (binary) or log mean softmax."""

    size_multiple = 1  # each member pads for itself

    def __init__(self, members: Sequence[nn.Module], classes: int):
        super().__init__()
        if len(members) < 2:
            raise ConfigError(f"an ensemble needs at least 2 members, got {len(members)}")
        self.members = nn.ModuleList(members)
        self.classes = int(classes)

    def forward(self, x: torch.Tensor):
        outs = [m(x) for m in self.members]
        heads = [isinstance(o, (tuple, list)) for o in outs]
        if any(heads):  # members with an image-level class head: (mask logits, class logits) each
            masks = [o[0] for o in outs]
            cls = _log_mean(torch.stack([torch.log_softmax(o[1], dim=1) for o in outs]))
            return self._mask_mean(masks), cls
        return self._mask_mean(outs)

    def _mask_mean(self, logits: list[torch.Tensor]) -> torch.Tensor:
        z = torch.stack(logits)
        if self.classes == 1:
            # logit(mean sigmoid) = log p - log(1 - p), both in log space: log sigmoid(z) = -softplus(-z).
            # Probabilities themselves lose their digits near 0 and 1 in fp32 (onnxruntime's sigmoid and
            # torch's then differ by 6% at p = 1e-6), their logs do not.
            return _log_mean(-F.softplus(-z)) - _log_mean(-F.softplus(z))
        return _log_mean(torch.log_softmax(z, dim=2))


def _log_mean(log_probs: torch.Tensor) -> torch.Tensor:
    """log(mean over dim 0 of exp(log_probs)), floored at log(_EPS) so outputs stay bounded."""
    out = torch.logsumexp(log_probs, dim=0) - math.log(log_probs.shape[0])
    return out.clamp_min(math.log(_EPS))


def member_spec(model_cfg: Any) -> dict:
    """The spec of one member from its ``ModelConfig`` (or a dict of the same fields); ``classification``
    is the member's class-head spec (``create_model(classification=...)``) or None."""
    if isinstance(model_cfg, dict):
        get = model_cfg.get
        head = get("classification")
    else:
        get = lambda k, d=None: getattr(model_cfg, k, d)  # noqa: E731
        head = model_cfg.head_spec()
    return {"name": get("name"), "encoder": get("encoder"), "in_channels": int(get("in_channels", 1)),
            "classes": int(get("classes", 1)), "params": dict(get("params") or {}),
            "classification": dict(head) if head else None}


@register_model("ensemble", description="Mean probability of several trained networks (params.members).",
                supports_classification=True)
def build_ensemble(encoder=None, in_channels: int = 1, classes: int = 1, members: Sequence[dict] = (),
                   classification: dict | None = None) -> nn.Module:
    """``classification``: the ensemble's class head (K classes); then every member has a head of K
    classes and the class output is the log of the mean member softmax."""
    from sonoseg.models.factory import create_model  # the members are ordinary registered models

    nets = []
    for i, spec in enumerate(members):
        spec = member_spec(spec)
        if spec["name"] == "ensemble":
            raise ConfigError(f"ensemble member {i} is itself an ensemble; list its members instead")
        if (spec["in_channels"], spec["classes"]) != (in_channels, classes):
            raise ConfigError(
                f"ensemble member {i} ({spec['name']}) has in_channels/classes "
                f"{spec['in_channels']}/{spec['classes']}, the ensemble {in_channels}/{classes}"
            )
        head = spec["classification"]
        want = None if not classification else int(classification["classes"])
        if (None if not head else int(head["classes"])) != want:
            raise ConfigError(f"ensemble member {i} ({spec['name']}) has "
                              f"{'no class head' if not head else str(head['classes']) + ' image classes'}, "
                              f"the ensemble {'none' if want is None else want}")
        nets.append(create_model(spec["name"], encoder=spec["encoder"], in_channels=in_channels,
                                 classes=classes, classification=head, **spec["params"]))
    return ProbabilityMeanEnsemble(nets, classes)
