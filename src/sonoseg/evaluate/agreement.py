"""Measurement agreement of predicted vs ground-truth masks (Bland–Altman).

Per image, the largest structure of the prediction and of the ground truth are measured by the
same code path as ``predict``/``measure`` (:func:`sonoseg.infer.frames.measure_frame`); per quantity
(area, max/perpendicular diameter, and HC/BPD/OFD with biometry) the report gives the mean absolute
error, the signed bias (mean of predicted - truth), its SD and the 95 % limits of agreement
(bias ± 1.96 SD). An image where either mask is empty has no pair for that quantity and is counted
in ``n_missing``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

import numpy as np

BASE_KEYS = ("area", "max_diameter", "perpendicular_diameter")
BIOMETRY_KEYS = ("hc", "bpd", "ofd")


def _values(rec: dict) -> dict:
    from sonoseg.infer.biometry import largest

    s = largest(rec["structures"])
    out = {k: (None if s is None else s.get(k)) for k in BASE_KEYS}
    bio = rec.get("biometry")
    for k in BIOMETRY_KEYS:
        out[k] = None if not bio else bio.get(k)
    return out


def measurement_row(stem: str, pred_rec: dict, gt_rec: dict, unit: str, spacing_source) -> dict:
    p, g = _values(pred_rec), _values(gt_rec)
    row = {"image": stem, "unit": unit, "spacing_source": spacing_source}
    for k in BASE_KEYS + BIOMETRY_KEYS:
        row[f"{k}_pred"], row[f"{k}_gt"] = p[k], g[k]
    return row


def agreement(rows: list[dict], keys: Iterable[str]) -> dict:
    out = {}
    for k in keys:
        pairs = [(r[f"{k}_pred"], r[f"{k}_gt"]) for r in rows
                 if r.get(f"{k}_pred") is not None and r.get(f"{k}_gt") is not None]
        n_missing = len(rows) - len(pairs)
        if not pairs:
            out[k] = {"n": 0, "n_missing": n_missing}
            continue
        p, g = np.array(pairs, dtype=float).T
        d = p - g
        sd = float(d.std(ddof=1)) if len(d) > 1 else 0.0
        bias = float(d.mean())
        out[k] = {"n": len(d), "n_missing": n_missing, "mean_abs_error": float(np.abs(d).mean()), "bias": bias,
                  "sd": sd, "loa_low": bias - 1.96 * sd, "loa_high": bias + 1.96 * sd,
                  "mean_abs_percent_error": float(np.mean(np.abs(d) / np.maximum(np.abs(g), 1e-12)) * 100),
                  "unit": rows[0]["unit"] + ("²" if k == "area" else "")}
    return out


def bland_altman_plot(rows: list[dict], stats: dict, path: str | Path) -> Path:
    """One panel per quantity: difference (pred - truth) vs mean, bias and limits of agreement."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k, v in stats.items() if v.get("n")]
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(4.2 * max(len(keys), 1), 3.6), squeeze=False)
    for ax, k in zip(axes[0], keys):
        pairs = [(r[f"{k}_pred"], r[f"{k}_gt"]) for r in rows
                 if r.get(f"{k}_pred") is not None and r.get(f"{k}_gt") is not None]
        p, g = np.array(pairs, dtype=float).T
        s = stats[k]
        ax.scatter((p + g) / 2, p - g, s=10, alpha=0.7)
        for y, style in ((s["bias"], "-"), (s["loa_low"], "--"), (s["loa_high"], "--")):
            ax.axhline(y, color="k", linestyle=style, linewidth=1)
        ax.set_title(f"{k}: bias {s['bias']:.2f}, LoA [{s['loa_low']:.2f}, {s['loa_high']:.2f}] {s['unit']}",
                     fontsize=8)
        ax.set_xlabel(f"mean of predicted and truth ({s['unit']})")
        ax.set_ylabel("predicted - truth")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def write_agreement(rows: list[dict], keys: Iterable[str], out_dir: Path, plot: bool = True) -> dict:
    import pandas as pd

    from sonoseg.infer.outputs import write_json

    stats = agreement(rows, list(keys))
    pd.DataFrame(rows).to_csv(out_dir / "measurements_per_image.csv", index=False)
    write_json({"definition": __doc__.strip().split("\n\n")[1].replace("\n", " "), "quantities": stats},
               out_dir / "measurement_agreement.json")
    if plot and any(v.get("n") for v in stats.values()):
        bland_altman_plot(rows, stats, out_dir / "bland_altman.png")
    return {k: {kk: (None if isinstance(vv, float) and not math.isfinite(vv) else vv) for kk, vv in v.items()}
            for k, v in stats.items()}
