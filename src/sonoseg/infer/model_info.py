"""What `sonoseg models` lists: the trained models shipped in the package (or given as files), with
their inputs and stored metrics, and the architectures registered for training."""

from __future__ import annotations

from pathlib import Path
from typing import Optional


def describe_model(path: str | Path) -> dict:
    """Inputs, classes and stored metrics of one checkpoint (no weights are built)."""
    from sonoseg.infer.domain import sidecar_path
    from sonoseg.train.checkpoint import load_checkpoint

    p = Path(path)
    ck = load_checkpoint(p)
    cfg, met = ck.get("config") or {}, ck.get("metrics") or {}
    pre, mod, post = cfg.get("preprocess", {}), cfg.get("model", {}), cfg.get("postprocess", {})
    test = (met.get("test") or {}).get("dice") or {}
    head = mod.get("classification") or {}
    image_classes = list(head.get("names") or []) if head and head.get("enabled", True) else []
    bacc = ((met.get("test_class") or {}).get("balanced_accuracy") or {})
    return {
        "name": p.stem, "file": str(p), "size_mb": round(p.stat().st_size / 1e6, 2),
        "arch": mod.get("name"), "encoder": mod.get("encoder"), "classes": mod.get("classes", 1),
        "input": {"grid": pre.get("size"), "channels": mod.get("in_channels", 1), "roi": pre.get("roi"),
                  "resize_mode": pre.get("resize_mode"), "normalize": pre.get("normalize")},
        "threshold": post.get("threshold", 0.5), "val_dice": met.get("val_dice", ck.get("best_score")),
        "test_dice": test.get("mean"), "test_dice_ci95": test.get("ci95"), "test_n": test.get("n"),
        "domain_check": sidecar_path(p).is_file(), "epoch": ck.get("epoch"), "version": mod.get("version"),
        "image_classes": image_classes, "test_balanced_accuracy": bacc.get("value"),
        "test_balanced_accuracy_ci95": bacc.get("ci95"),
    }


def shipped_models() -> list[dict]:
    from sonoseg.infer.default_model import DEFAULT_MODEL_NAME, assets_dir

    out = []
    for p in sorted((assets_dir() / "models").glob("*.pt")):
        d = describe_model(p)
        d["default"] = p.name == DEFAULT_MODEL_NAME
        out.append(d)
    return out


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
