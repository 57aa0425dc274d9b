"""Start a run from another checkpoint's weights (fine-tuning), whole or in part.

Whole (the default) needs the same architecture and fails loudly otherwise. Partial loads every tensor
whose name and shape match and leaves the rest at their fresh initialisation: the way to keep a trained
encoder and class head while changing the decoder (e.g. a narrower FPN for speed), as with
``load_state_dict(strict=False)`` in plain PyTorch, but with the shape check PyTorch does not do and a
report of what was left out, so a typo cannot silently train from scratch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch.nn as nn

from sonoseg.errors import InputError
from sonoseg.models.checkpoint import load_checkpoint


@dataclass
class InitReport:
    loaded: int
    total: int
    fresh: list[str] = field(default_factory=list)  # model tensors left at their initialisation
    unused: list[str] = field(default_factory=list)  # checkpoint tensors with no place in the model

    def summary(self) -> str:
        def groups(names: list[str]) -> str:
            tops = sorted({".".join(n.split(".")[:2]) for n in names})
            return ", ".join(tops[:8]) + (" ..." if len(tops) > 8 else "")

        msg = f"{self.loaded}/{self.total} tensors loaded"
        if self.fresh:
            msg += f"; {len(self.fresh)} fresh ({groups(self.fresh)})"
        if self.unused:
            msg += f"; {len(self.unused)} unused ({groups(self.unused)})"
        return msg


def init_from_checkpoint(model: nn.Module, path: str | Path, partial: bool = False) -> InitReport:
    """Copy weights from checkpoint ``path`` into ``model``; see the module docstring."""
    source = load_checkpoint(path)["model_state"]
    target = model.state_dict()
    if not partial:
        try:
            model.load_state_dict(source)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()
            raise InputError(path, "its weights do not fit this architecture "
                                   f"({first[0] if first else 'mismatch'}); use partial initialisation "
                                   "to load only the tensors that match") from exc
        return InitReport(loaded=len(target), total=len(target))
    matched = {k: v for k, v in source.items() if k in target and tuple(target[k].shape) == tuple(v.shape)}
    if not matched:
        raise InputError(path, "no tensor of this checkpoint matches the model by name and shape")
    model.load_state_dict(matched, strict=False)
    return InitReport(loaded=len(matched), total=len(target),
                      fresh=[k for k in target if k not in matched],
                      unused=[k for k in source if k not in matched])
