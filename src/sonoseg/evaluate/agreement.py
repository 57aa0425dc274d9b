"""Measurement agreement of predicted vs ground-truth masks (Bland–Altman).

Per image, the largest structure of the prediction and of the ground truth are measured by the
same code path as ``predict``/``measure`` (:func:`sonoseg.infer.frames.measure_frame`); per quantity
(area, max/perpendicular diameter, and HC/BPD/OFD with biometry) the report gives the mean absolute
error, the signed bias (mean of predicted - truth), its SD and the 95 % limits of agreement
(bias ± 1.96 SD). An image where either mask is empty has no pair for that quantity and is counted
in ``n_missing``.

Reference values (``--reference-column COL[:QUANTITY]``, a column of the dataset's labels.csv such as
the official head circumference of each image) are compared the same way, twice: the prediction's
quantity against them ("hc vs COL"), and the ground-truth mask's ("hc (truth mask) vs COL"), which
shows how far the masks' own boundary convention is from the reference (see ``bench/contour.py``).
They are taken in the measurements' unit (mm when the images have a pixel spacing).
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


# reference column name -> quantity, when not given as COL:QUANTITY (first matching word wins)
REFERENCE_WORDS = (("circumference", "hc"), ("hc", "hc"), ("biparietal", "bpd"), ("bpd", "bpd"),
                   ("occipit", "ofd"), ("ofd", "ofd"), ("area", "area"), ("diameter", "max_diameter"))


def parse_reference(spec: str) -> tuple[str, str]:
    """``"head_circumference_mm"`` -> (column, "hc"); ``"col:bpd"`` -> ("col", "bpd")."""
    from sonoseg.errors import ConfigError

    col, _, quantity = spec.partition(":")
    col, quantity = col.strip(), quantity.strip().lower()
    if not quantity:
        low = col.lower()
        quantity = next((q for word, q in REFERENCE_WORDS if word in low), "")
    if quantity not in BASE_KEYS + BIOMETRY_KEYS:
        raise ConfigError(f"--reference-column {spec!r}: say which quantity it holds as COL:QUANTITY, QUANTITY one of "
                          f"{', '.join(BASE_KEYS + BIOMETRY_KEYS)}")
    return col, quantity


def read_reference(labels_csv: Path, column: str) -> dict[str, float]:
    """stem -> value of ``column`` in a labels.csv (empty cells skipped); InputError naming the file."""
    from sonoseg.data.layout import IMAGE_COLUMNS, file_stem, pick_column, read_csv_records
    from sonoseg.errors import InputError

    header, records = read_csv_records(labels_csv, "labels file")
    img, col = pick_column(header, IMAGE_COLUMNS), pick_column(header, (column.lower(),))
    if img is None or col is None:
        missing = "an image column" if img is None else f"the column {column!r}"
        raise InputError(labels_csv, f"no {missing} (columns: {', '.join(header) or 'none'})")
    out = {}
    for rec in records:
        name, raw = (rec.get(img) or "").strip(), (rec.get(col) or "").strip()
        if not name or not raw:
            continue
        try:
            value = float(raw)
        except ValueError:
            raise InputError(labels_csv, f"image {name!r}: {column} value {raw!r} is not a number") from None
        if not math.isfinite(value):
            raise InputError(labels_csv, f"image {name!r}: {column} value {raw!r} is not a finite number")
        out[file_stem(name.replace("\\", "/").split("/")[-1])] = value
    return out


def add_reference(rows: list[dict], column: str, quantity: str, values: dict[str, float]) -> list[str]:
    """Pair each row's predicted and truth-mask ``quantity`` with the reference value of its image;
    returns the two agreement keys it added."""
    keys = [f"{quantity} vs {column}", f"{quantity} (truth mask) vs {column}"]
    for r in rows:
        ref = values.get(r["image"])
        for key, side in zip(keys, ("pred", "gt")):
            r[f"{key}_pred"], r[f"{key}_gt"] = r.get(f"{quantity}_{side}"), ref
    return keys


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
                  "unit": rows[0]["unit"] + ("²" if k.split(" ")[0] == "area" else "")}
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
