"""Package a training checkpoint for shipping (the default model, a breast tier, a user's own model).

One place decides what a shipped file holds, so every shipped model is packaged alike:
- no optimiser, scheduler, scaler, RNG state or history (a shipped file cannot be resumed);
- a config without machine-local paths: no data root or cache; split files and ``data.sources`` (the
  provenance of a multi-source model) keep relative paths as typed, absolute ones are dropped (a source's
  root becomes its folder name); ``train.device`` "auto"; the given split file and version; a
  distillation teacher's path replaced by the shipped one it names;
- weights stored as fp16, or conv/linear weights as int8 with one scale per output channel
  (``weight_storage``) -- what is evaluated after packaging is what ships;
- the checkpoint's own metrics plus any given (test metrics travel inside for ``sonoseg models``);
- the from-scratch recipe, if given or if the source already carries one (re-shipping keeps it).
``slim_checkpoint`` (models/checkpoint.py) is the minimal form: state dropped, nothing else changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import torch

from sonoseg.models.checkpoint import INT8_STORAGE, KEPT, half_state, int8_state, load_checkpoint


@dataclass
class ShipOptions:
    """How to package.

    - ``version``: becomes model.version, written into every result;
    - ``storage``: "fp16", or "int8" (conv/linear weights per output channel, the rest fp16);
    - ``split_file``: the repository-relative split to record;
    - ``keep_float``: ONNX node prefixes every int8 build keeps in fp32;
    - ``teacher``: the shipped path recorded for a distillation teacher (None: none is recorded; a local
      path never ships);
    - ``recipe``: the from-scratch training recipe (a config dict) for ``sonoseg train`` without ``--config``;
    - ``tta``: the test-time flips every run applies (``postprocess.tta``, e.g. ``["h"]``); None keeps the file's.
    """

    version: Optional[str] = None
    storage: Literal["fp16", "int8"] = "fp16"
    split_file: Optional[str] = None
    keep_float: list[str] = field(default_factory=list)
    teacher: Optional[str] = None
    recipe: Optional[dict] = None
    tta: Optional[list[str]] = None


def _portable(path: Optional[str]) -> Optional[str]:
    """A relative path as it was typed (e.g. ``configs/busi_split.csv``); None for an absolute one."""
    return path if path and not Path(path).is_absolute() else None


def package_checkpoint(payload: dict, opts: ShipOptions, metrics: Optional[dict] = None) -> dict:
    """The shipped form of a loaded checkpoint ``payload`` (not modified)."""
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in payload["config"].items()}
    data = cfg["data"]
    data.update(root=None, cache_dir=None, split_file=opts.split_file or _portable(data.get("split_file")))
    if data.get("sources"):  # provenance of a multi-source model: relative paths as typed, else folder names
        data["sources"] = [{**s, "root": _portable(s["root"]) or Path(s["root"]).name,
                            "split_file": _portable(s.get("split_file"))} for s in data["sources"]]
    cfg["train"].update(device="auto")
    distill = cfg["train"].get("distill") or {}
    if distill.get("teacher"):
        cfg["train"]["distill"] = {**distill, "teacher": opts.teacher}
    if opts.version:
        cfg["model"]["version"] = opts.version
    if opts.keep_float:
        cfg["model"]["int8_keep_float"] = list(opts.keep_float)
    if opts.tta is not None:
        cfg["postprocess"] = {**cfg.get("postprocess", {}), "tta": list(opts.tta)}
    out = {k: payload[k] for k in KEPT if k in payload}
    if opts.storage == "int8":
        state, scales = int8_state(payload["model_state"])
        out.update(weight_storage=INT8_STORAGE, weight_scales=scales)
    else:
        state = half_state(payload["model_state"])
    out.update(config=cfg, model_state=state, metrics={**(payload.get("metrics") or {}), **(metrics or {})})
    recipe = opts.recipe if opts.recipe is not None else payload.get("recipe")
    if recipe is not None:
        out["recipe"] = recipe
    return out


def ship_checkpoint(src: str | Path, dst: str | Path, opts: ShipOptions, metrics: Optional[dict] = None) -> Path:
    """Load ``src``, package it by ``opts``, write ``dst``; returns ``dst``."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(package_checkpoint(load_checkpoint(src), opts, metrics), dst)
    return dst
