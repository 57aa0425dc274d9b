"""The classification part of ``evaluate`` for a model with a class head: class_metrics.json,
confusion_matrix.csv/.png, roc.png, reliability.png, per-class segmentation metrics and how the
"no lesion" decision (sonoseg.infer.decision) does on images of the no-lesion class."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from sonoseg.metrics.classification import class_metrics, expected_calibration_error, roc_curve

SEG_COLUMNS = ("dice", "iou", "precision", "recall", "hd95", "assd")


def per_class_segmentation(per_image: pd.DataFrame, true_class: dict[str, Optional[str]], n_boot: int = 1000) -> dict:
    """Segmentation metrics of ``per_image`` (rows by stem) grouped by the images' true class."""
    from sonoseg.evaluate.aggregate import summarize

    df = per_image.copy()
    df["true_class"] = [true_class.get(s) for s in df["stem"]]
    out = {}
    for cls, g in df.groupby("true_class", dropna=True):
        out[str(cls)] = {m: summarize(g[m], n_boot=n_boot) for m in SEG_COLUMNS if m in g}
        out[str(cls)]["n_images"] = int(len(g))
    return out


def no_lesion_rates(rows: Sequence[dict], no_lesion_class: Optional[str]) -> dict:
    """On images whose true class is the no-lesion class: share called "no lesion" by the class head,
    by the empty mask, and by the combined decision rule; and on lesion images, the share the rule
    calls "lesion found" (its sensitivity for a lesion being present)."""
    if not no_lesion_class:
        return {}
    normal = [r for r in rows if r["true_class"] == no_lesion_class]
    lesion = [r for r in rows if r["true_class"] not in (None, no_lesion_class)]

    def share(items, key, want):
        return float(np.mean([r[key] == want for r in items])) if items else float("nan")

    return {
        "no_lesion_class": no_lesion_class,
        "n_no_lesion_images": len(normal),
        "no_lesion_by_class_head": share(normal, "head_no_lesion", True),
        "no_lesion_by_empty_mask": share(normal, "mask_empty", True),
        "no_lesion_by_decision_rule": share(normal, "lesion_found", False),
        "n_lesion_images": len(lesion),
        "lesion_found_by_decision_rule": share(lesion, "lesion_found", True),
        "lesion_mask_nonempty": share(lesion, "mask_empty", False),
    }


def _plots(probs: np.ndarray, labels: np.ndarray, names: list[str], cm: np.ndarray, out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = {}
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    ax.imshow(cm, cmap="Blues")
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="black")
    ax.set_xticks(range(len(names)), names, rotation=30)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    paths["confusion_png"] = out / "confusion_matrix.png"
    fig.savefig(paths["confusion_png"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4.2, 4))
    for c, name in enumerate(names):
        fpr, tpr = roc_curve(probs[:, c], labels == c)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], ls=":", color="grey")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("one-vs-rest ROC")
    ax.legend(loc="lower right")
    fig.tight_layout()
    paths["roc_png"] = out / "roc.png"
    fig.savefig(paths["roc_png"], dpi=110)
    plt.close(fig)

    ece, bins = expected_calibration_error(probs, labels)
    fig, ax = plt.subplots(figsize=(4.2, 4))
    xs = [(b["lo"] + b["hi"]) / 2 for b in bins if b["n"]]
    ax.bar(xs, [b["accuracy"] for b in bins if b["n"]], width=0.09, alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], ls=":", color="grey")
    ax.set_xlabel("top-class confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability (ECE {ece:.3f})")
    fig.tight_layout()
    paths["reliability_png"] = out / "reliability.png"
    fig.savefig(paths["reliability_png"], dpi=110)
    plt.close(fig)
    return paths


def write_class_report(rows: list[dict], names: list[str], per_image: pd.DataFrame, out_dir: str | Path,
                       no_lesion_class: Optional[str], pair: tuple[str, str] = ("benign", "malignant"),
                       n_boot: int = 1000) -> dict:
    """``rows``: one dict per evaluated image {stem, true_class, probs, head_no_lesion, mask_empty,
    lesion_found}. Writes the files listed in the module docstring; returns the class_metrics.json content."""
    out = Path(out_dir)
    index = {n: i for i, n in enumerate(names)}
    probs = np.array([r["probs"] for r in rows], dtype=float).reshape(len(rows), len(names))
    labels = np.array([index.get(r["true_class"], -1) for r in rows], dtype=int)
    res = class_metrics(probs, labels, names, pair=pair, n_boot=n_boot)
    res["ece_bins"] = expected_calibration_error(probs[labels >= 0], labels[labels >= 0])[1]
    res["segmentation_per_class"] = per_class_segmentation(per_image, {r["stem"]: r["true_class"] for r in rows}, n_boot)
    res["no_lesion_decision"] = no_lesion_rates(rows, no_lesion_class)
    cm = np.array(res["confusion_matrix"])
    pd.DataFrame(cm, index=[f"true_{n}" for n in names], columns=[f"pred_{n}" for n in names]).to_csv(
        out / "confusion_matrix.csv")
    pd.DataFrame([{"stem": r["stem"], "true_class": r["true_class"],
                   **{f"p_{n}": float(p) for n, p in zip(names, r["probs"])},
                   "predicted_class": names[int(np.argmax(r["probs"]))], "lesion_found": r["lesion_found"],
                   "tentative_outline": bool(r.get("tentative", False))}
                  for r in rows]).to_csv(out / "per_image_class.csv", index=False)
    if (labels >= 0).any():
        _plots(probs[labels >= 0], labels[labels >= 0], names, cm, out)
    from sonoseg.evaluate.aggregate import jsonable

    (out / "class_metrics.json").write_text(json.dumps(jsonable(res), indent=2, allow_nan=False) + "\n")
    return res
