"""Find the lesion first: miss and false-lesion rates beside Dice, for one evaluated set.

A missed lesion costs more than a loose outline, and a mean Dice hides the difference: 10% of lesions
missed (Dice 0) and 90% outlined at 0.8 give the same mean as every lesion outlined at 0.72. So each
evaluation also reports, on images whose ground truth has a lesion, the share with an empty predicted
mask ("missed by the mask") and, with a class head, the share the decision rule calls "no lesion"
("missed by the decision", :mod:`sonoseg.infer.decision`); on images without one, the share where a
lesion is reported; and Dice over all lesion images next to Dice over the lesions that were found.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pandas as pd


def _share(mask: np.ndarray) -> float:
    return float(mask.mean()) if mask.size else math.nan


def detection_summary(per_image: pd.DataFrame, decisions: Optional[dict[str, bool]] = None) -> dict:
    """``per_image``: evaluate's table (``stem``, ``gt_empty``, ``pred_empty``, ``dice``); ``decisions``:
    stem -> lesion_found of the decision rule (models with a class head). JSON-ready dict."""
    if per_image.empty:
        return {}
    gt_empty = per_image["gt_empty"].astype(bool).to_numpy()
    pred_empty = per_image["pred_empty"].astype(bool).to_numpy()
    dice = pd.to_numeric(per_image["dice"], errors="coerce").to_numpy(dtype=float)
    lesion, normal = ~gt_empty, gt_empty
    found = lesion & ~pred_empty
    out = {
        "n_lesion_images": int(lesion.sum()),
        "n_no_lesion_images": int(normal.sum()),
        "missed_by_mask": _share(pred_empty[lesion]),
        "n_missed_by_mask": int((pred_empty & lesion).sum()),
        "false_lesion_by_mask": _share(~pred_empty[normal]),
        "dice_lesion_images": float(np.nanmean(dice[lesion])) if lesion.any() else math.nan,
        "dice_found_lesions": float(np.nanmean(dice[found])) if found.any() else math.nan,
    }
    if decisions:
        says = np.array([decisions.get(s) for s in per_image["stem"]], dtype=object)
        known = np.array([v is not None for v in says])
        said_lesion = np.array([bool(v) for v in says])
        out["missed_by_decision"] = _share(~said_lesion[lesion & known])
        out["n_missed_by_decision"] = int((~said_lesion & lesion & known).sum())
        out["false_lesion_by_decision"] = _share(said_lesion[normal & known])
    return out


def detection_line(d: dict) -> str:
    """One console line of :func:`detection_summary`."""
    if not d:
        return ""
    parts = [f"lesions missed: {d['missed_by_mask']:.1%} by the mask ({d['n_missed_by_mask']}/{d['n_lesion_images']})"]
    if "missed_by_decision" in d:
        parts.append(f"{d['missed_by_decision']:.1%} by the decision ({d['n_missed_by_decision']})")
    if d["n_no_lesion_images"]:
        fl = f"{d['false_lesion_by_decision']:.1%}" if "false_lesion_by_decision" in d else f"{d['false_lesion_by_mask']:.1%}"
        parts.append(f"false lesion on {d['n_no_lesion_images']} normal(s): {fl}")
    parts.append(f"Dice on found lesions {d['dice_found_lesions']:.3f} (all lesion images {d['dice_lesion_images']:.3f})")
    return "; ".join(parts)
