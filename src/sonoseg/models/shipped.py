"""Where the shipped models, sample DICOMs and calibration frames live inside the package, the names
that select them, and the shipped recipe (what ``sonoseg train`` uses when no config is given).

Two breast tiers ship, one name each (issue 22): ``fast`` (int8, the default of ``predict`` and ``export``,
for a workstation or a cart) and ``accurate`` (the best model on validation, fp32, the default of ``serve``
and ``listen``, where latency matters little). Which file each name means was decided by the rules in
docs/breast_v4/ (``tiers_rule.md``, ``v5_rule.md``, ``fast128_rule.md``): ``fast`` is a 128x128 student
distilled from the accurate tier, ``accurate`` an ensemble of three 256x256 networks
(v4b, v4a, v5) with flip TTA. Earlier
defaults stay reachable by version for comparison: ``v3`` is shipped; v2 is in git (MODEL_CARD.md says how
to recover it). ``--model NAME`` takes these names wherever it takes a model file; an existing file of the
same name wins."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from sonoseg.errors import SonosegError

V3_MODEL_NAME = "busi_default.pt"
DEFAULT_MODEL_NAME = V3_MODEL_NAME  # the file `sonoseg train` takes its recipe from (and older imports)
MODEL_NAMES = {"fast": "breast_fast.pt", "accurate": "breast_accurate.pt", "v3": V3_MODEL_NAME}
DEFAULT_TIER = {"predict": "fast", "export": "fast", "serve": "accurate", "listen": "accurate"}
# earlier defaults kept in git, not in the package: --model NAME says how to get the file
IN_GIT = {"v2": "git show f68c3e2:src/sonoseg/assets/models/busi_default.pt > busi_v2.pt"}
FP32_ONLY = {"breast_accurate.pt"}  # validated in fp32; backend "auto" never builds an int8 version of it


def assets_dir() -> Path:
    return Path(str(resources.files("sonoseg") / "assets"))


def shipped_model_path(name: str) -> Path:
    """The shipped file of model ``name`` (``fast``, ``accurate``, ``v3``)."""
    if name in IN_GIT:
        raise SonosegError(f"{name} is not shipped in the package; recover it from a source checkout with "
                           f"`{IN_GIT[name]}` and pass that file to --model")
    if name not in MODEL_NAMES:
        raise SonosegError(f"{name!r} is not a shipped model name; use one of {', '.join(MODEL_NAMES)} or a file")
    p = assets_dir() / "models" / MODEL_NAMES[name]
    if not p.is_file():
        raise SonosegError(f"{p}: shipped model {name!r} missing from this installation")
    return p


def default_model_path(job: str = "predict") -> Path:
    """The model a job uses when none is given: ``fast`` for predict and export, ``accurate`` for serve and
    listen (:data:`DEFAULT_TIER`)."""
    return shipped_model_path(DEFAULT_TIER.get(job, "fast"))


def resolve_model(spec, job: str = "predict") -> Path:
    """``--model`` as given: None -> the job's default tier; a shipped name (``fast``, ``accurate``, ``v3``)
    -> its file, unless a file of that name exists here; anything else -> that path."""
    if spec is None or str(spec) == "":
        return default_model_path(job)
    text = str(spec)
    if (text in MODEL_NAMES or text in IN_GIT) and not Path(text).exists():
        return shipped_model_path(text)
    return Path(spec)


def names_of(path: Path) -> list[str]:
    """The shipped names of ``path`` (one file may carry two: ``fast`` and ``v3``); [] for any other file."""
    try:
        if path.resolve().parent != (assets_dir() / "models").resolve():
            return []
    except OSError:
        return []
    return [k for k, v in MODEL_NAMES.items() if v == path.name]


def tier_of(path: Path) -> str | None:
    """The first shipped name of ``path`` (``fast``, ``accurate``, ``v3``), None for any other file."""
    names = names_of(path)
    return names[0] if names else None


def sample_dicom_dir() -> Path:
    return assets_dir() / "samples"


def default_recipe() -> dict:
    """The shipped default model's training recipe as a plain dict, with the machine- and
    dataset-specific fields cleared (data root, split file, cache folder, thread count), so that a
    ``sonoseg train DATASET`` without ``--config`` trains that recipe on the user's data.

    The recipe is the from-scratch config stored at ship time (``recipe``; the checkpoint's own config
    can be a warm-restart continuation), else the checkpoint's config. What belongs to the trained model,
    not to the recipe, is dropped: its version, its int8 fp32 layers (chosen per model on validation)
    and its class names (the user's labels.csv names the classes)."""
    import torch

    payload = torch.load(shipped_model_path("v3"), map_location="cpu", weights_only=False)
    cfg = dict(payload.get("recipe") or payload["config"])
    cfg["data"] = {k: v for k, v in cfg.get("data", {}).items() if k not in ("root", "split_file", "cache_dir")}
    cfg["train"] = {k: v for k, v in cfg.get("train", {}).items() if k != "threads"}
    model = {k: v for k, v in cfg.get("model", {}).items() if k not in ("version", "int8_keep_float")}
    if isinstance(model.get("classification"), dict):
        model["classification"] = {k: v for k, v in model["classification"].items() if k != "names"}
    cfg["model"] = model
    return cfg
