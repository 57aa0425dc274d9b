"""What `sonoseg models` lists: the trained models shipped in the package and in a source checkout's
``models/`` folder (or given as files), with their inputs, stored metrics and what they were validated
on, and the architectures registered for training.

"What it was validated on" is a small JSON beside each shipped model (``<stem>.validation.json``:
``validated_on``, ``independent_test``, ``validated_on_training_data``, ``note``), written by whoever
ships the model: a checkpoint's own "val Dice" cannot say whether its validation data was independent
(``models/ct_organs_fit.pt`` was validated on the volume it was fitted to)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional


def describe_model(path: str | Path) -> dict:
    """Inputs, classes and stored metrics of one checkpoint (no weights are built)."""
    from sonoseg.infer.domain import sidecar_path
    from sonoseg.models.checkpoint import load_checkpoint

    p = Path(path)
    ck = load_checkpoint(p)
    cfg, met = ck.get("config") or {}, ck.get("metrics") or {}
    pre, mod, post = cfg.get("preprocess", {}), cfg.get("model", {}), cfg.get("postprocess", {})
    vol = cfg.get("volume") or None
    test = (met.get("test") or {}).get("dice") or {}
    head = mod.get("classification") or {}
    image_classes = list(head.get("names") or []) if head and head.get("enabled", True) else []
    bacc = ((met.get("test_class") or {}).get("balanced_accuracy") or {})
    return {
        "name": p.stem, "file": str(p), "size_mb": round(p.stat().st_size / 1e6, 2),
        "arch": mod.get("name"), "encoder": mod.get("encoder"), "classes": mod.get("classes", 1),
        "kind": "volume3d" if vol else "image2d",
        "input": ({"grid": None, "channels": mod.get("in_channels", 1), "roi": None, "spacing_mm": vol.get("spacing"),
                   "window": vol.get("window"), "labels": {str(k): v for k, v in (vol.get("labels") or {}).items()}}
                  if vol else
                  {"grid": pre.get("size"), "channels": mod.get("in_channels", 1), "roi": pre.get("roi"),
                   "resize_mode": pre.get("resize_mode"), "normalize": pre.get("normalize")}),
        "threshold": post.get("threshold", 0.5), "val_dice": met.get("val_dice", ck.get("best_score")),
        "test_dice": test.get("mean"), "test_dice_ci95": test.get("ci95"), "test_n": test.get("n"),
        "domain_check": sidecar_path(p).is_file(), "epoch": ck.get("epoch"), "version": mod.get("version"),
        "image_classes": image_classes, "test_balanced_accuracy": bacc.get("value"),
        "test_balanced_accuracy_ci95": bacc.get("ci95"), "validation": validation_record(p),
    }


def validation_record(path: Path) -> Optional[dict]:
    """The model's ``<stem>.validation.json`` (see the module doc), or None."""
    side = path.with_name(path.stem + ".validation.json")
    if not side.is_file():
        return None
    try:
        return json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def checkout_models_dir() -> Optional[Path]:
    """``models/`` of a source checkout (beside ``src/sonoseg``), where example models too large or too
    specialised for the package live; None for an installed package."""
    import sonoseg

    root = Path(sonoseg.__file__).resolve().parents[2]
    d = root / "models"
    return d if (root / "pyproject.toml").is_file() and d.is_dir() else None


def shipped_models() -> list[dict]:
    """Shipped models, the named ones first (``tier``: fast, accurate, v3; ``default_for``: the jobs that
    use it when no --model is given)."""
    from sonoseg.models.shipped import DEFAULT_TIER, MODEL_NAMES, assets_dir, names_of

    out = []
    extra = checkout_models_dir()
    for p in sorted((assets_dir() / "models").glob("*.pt")) + (sorted(extra.glob("*.pt")) if extra else []):
        d = describe_model(p)
        d["names"] = names_of(p)
        d["tier"] = d["names"][0] if d["names"] else None
        d["default_for"] = [job for job, tier in DEFAULT_TIER.items() if tier in d["names"]]
        d["default"] = bool(d["default_for"])
        out.append(d)
    order = list(MODEL_NAMES)
    return sorted(out, key=lambda d: order.index(d["tier"]) if d["tier"] in order else len(order))


def registered_architectures() -> list[dict]:
    from sonoseg.models.registry import get_entry, list_models

    out = []
    for name in list_models():
        e = get_entry(name)
        out.append({"arch": name, "default_encoder": e.default_encoder, "uses_encoder": e.uses_encoder,
                    "description": (e.description or "").strip().splitlines()[0] if e.description else ""})
    return out


def list_all(paths: Optional[list[str | Path]] = None) -> dict:
    return {"shipped": shipped_models(), "files": [describe_model(p) for p in paths or []],
            "architectures": registered_architectures()}
