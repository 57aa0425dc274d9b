"""Combine trained checkpoints into one ensemble checkpoint (see :mod:`sonoseg.models.ensemble`).

The members must agree on everything that happens outside the network -- preprocessing,
input channels, classes -- because the ensemble runs one preprocessing for all of them; their
architectures and training recipes may differ. The result is an ordinary sonoseg checkpoint, so
predict / evaluate / export / benchmark take it as they take any other model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from sonoseg.errors import ConfigError
from sonoseg.models.checkpoint import checkpoint_config, half_state, load_checkpoint, save_checkpoint


def _members_of(payload: dict, path: Path) -> list[tuple[dict, dict, dict]]:
    """(spec, state dict of the bare PadToMultiple-wrapped member, provenance) per member."""
    from sonoseg.models.ensemble import member_spec

    cfg = checkpoint_config(payload)
    info = {"source": path.parent.name + "/" + path.name, "epoch": payload.get("epoch"),
            "best_score": payload.get("best_score")}
    if cfg.model.name != "ensemble":
        return [(member_spec(cfg.model), payload["model_state"], info)]
    # flatten a nested ensemble: its members become members of the new one
    prefix = "model.members."
    out = []
    for i, spec in enumerate(cfg.model.params["members"]):
        p = f"{prefix}{i}."
        state = {k[len(p):]: v for k, v in payload["model_state"].items() if k.startswith(p)}
        out.append((member_spec(spec), state, dict(info, member=i)))
    return out


def ensemble_checkpoints(paths: Sequence[str | Path], dst: str | Path, half: bool = False) -> Path:
    """Write one checkpoint whose model is the probability-mean ensemble of ``paths``' models.

    Preprocessing and postprocessing come from the first checkpoint; every other checkpoint must
    have the same preprocessing, input channels and classes. ``half`` stores fp16 weights.
    """
    from sonoseg.models import create_model_from_config, unwrap

    if len(paths) < 2:
        raise ConfigError(f"an ensemble needs at least 2 checkpoints, got {len(paths)}")
    payloads = [(Path(p), load_checkpoint(p)) for p in paths]
    first_path, first = payloads[0]
    cfg = checkpoint_config(first)
    members: list[tuple[dict, dict, dict]] = []
    for path, payload in payloads:
        other = checkpoint_config(payload)
        if other.model.class_names() != cfg.model.class_names():
            raise ConfigError(f"{path}: image classes {other.model.class_names() or 'none'} differ from "
                              f"{first_path} ({cfg.model.class_names() or 'none'}); ensemble members "
                              "must share one class head")
        if other.preprocess != cfg.preprocess:
            diff = sorted(k for k, v in other.preprocess.model_dump().items() if getattr(cfg.preprocess, k) != v)
            raise ConfigError(f"{path}: preprocessing differs from {first_path} ({', '.join(diff)}); "
                              "ensemble members must share one preprocessing")
        if (other.model.in_channels, other.model.classes) != (cfg.model.in_channels, cfg.model.classes):
            raise ConfigError(f"{path}: in_channels/classes {other.model.in_channels}/{other.model.classes} "
                              f"differ from {first_path} ({cfg.model.in_channels}/{cfg.model.classes})")
        members.extend(_members_of(payload, path))

    cfg.model = cfg.model.model_copy(update={
        "name": "ensemble", "encoder": None, "encoder_weights": None,
        "params": {"members": [spec for spec, _, _ in members]},
    })
    model = create_model_from_config(cfg.model)
    for net, (_, state, _) in zip(unwrap(model).members, members):
        net.load_state_dict(state)  # strict: a member that does not match its spec fails here
    state = model.state_dict()
    if half:
        state = half_state(state)
    return save_checkpoint(dst, config=cfg, model_state=state, epoch=0, best_score=None,
                           metrics={"ensemble_of": [info for _, _, info in members]})
