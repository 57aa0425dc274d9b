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

from typing import Any, Sequence

import torch
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.classes == 1:
            p = torch.stack([torch.sigmoid(m(x)) for m in self.members]).mean(0)
            p = p.clamp(_EPS, 1.0 - _EPS)
            return torch.log(p) - torch.log1p(-p)
        p = torch.stack([torch.softmax(m(x), dim=1) for m in self.members]).mean(0)
        return torch.log(p.clamp_min(_EPS))


def member_spec(model_cfg: Any) -> dict:
    """The spec of one member from its ``ModelConfig`` (or a dict of the same fields)."""
    get = model_cfg.get if isinstance(model_cfg, dict) else lambda k, d=None: getattr(model_cfg, k, d)
    return {"name": get("name"), "encoder": get("encoder"), "in_channels": int(get("in_channels", 1)),
            "classes": int(get("classes", 1)), "params": dict(get("params") or {})}


@register_model("ensemble", description="Mean probability of several trained networks (params.members).")
def build_ensemble(encoder=None, in_channels: int = 1, classes: int = 1, members: Sequence[dict] = ()) -> nn.Module:
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
        nets.append(create_model(spec["name"], encoder=spec["encoder"], in_channels=in_channels,
                                 classes=classes, **spec["params"]))
    return ProbabilityMeanEnsemble(nets, classes)
