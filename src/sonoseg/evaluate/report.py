"""Human-readable evaluation report: report.md + report.html, a Dice histogram and an overlay gallery.

Figures are drawn with matplotlib's object API on an Agg canvas (no pyplot, so the caller's
backend / global state is never touched). The gallery shows the best, median and worst images by
Dice (images with a non-empty ground truth only; ties broken by stem so the choice is stable).
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np

from sonoseg.evaluate.aggregate import CONVENTIONS, EvalResult
from sonoseg.metrics.segmentation import DISTANCE, METRICS
from sonoseg.outputs.overlay import (
    FN_COLOR,
    FP_COLOR,
    TP_COLOR,
    contour_overlay,
    error_map,
    overlay_image,
    to_rgb_uint8,
)

GT_COLOR = (86, 180, 233)  # sky blue
PRED_COLOR = (230, 159, 0)  # orange

LABELS = {
    "dice": "Dice",
    "iou": "IoU",
    "precision": "Precision",
    "recall": "Recall (sensitivity)",
    "specificity": "Specificity",
    "accuracy": "Pixel accuracy",
    "hd95": "HD95",
    "assd": "ASSD",
}


@dataclass
class GalleryItem:
    """One image with its masks, for the overlay gallery (image: HxW float or uint8)."""

    stem: str
    image: np.ndarray
    gt: np.ndarray
    pred: np.ndarray


Gallery = Union[Sequence[GalleryItem], Callable[[str], GalleryItem]]


def select_gallery_stems(result: EvalResult, stems: Optional[Sequence[str]] = None) -> dict[str, str]:
    """{"best", "median", "worst"} -> stem by per-image Dice (restricted to ``stems`` if given).

    Lets a caller load only these few images for :func:`write_report`.
    """
    df = result.per_image
    if df.empty or "dice" not in df:
        return {}
    d = df[["stem", "dice"]].copy()
    d["dice"] = np.asarray(d["dice"], dtype=float)
    d = d[np.isfinite(d["dice"])]
    if stems is not None:
        d = d[d["stem"].isin(set(stems))]
    if d.empty:
        return {}
    d = d.sort_values(["dice", "stem"], ascending=[False, True], kind="mergesort").reset_index(drop=True)
    picks = {"best": 0, "median": (len(d) - 1) // 2, "worst": len(d) - 1}
    return {label: str(d.loc[i, "stem"]) for label, i in picks.items()}


def _fmt(v, digits: int = 3) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "n/a"
    return f"{f:.{digits}f}" if math.isfinite(f) else "n/a"


def _digits(metric: str) -> int:
    return 2 if metric in DISTANCE else 3


def _metric_rows(agg: dict[str, dict], units: str) -> list[list[str]]:
    rows = []
    for m in METRICS:
        s = agg.get(m, {})
        k = _digits(m)
        unit = units if m in DISTANCE else ""
        lo, hi = (s.get("ci95") or [math.nan, math.nan])[:2]
        rows.append(
            [
                LABELS[m] + (f" ({unit})" if unit else ""),
                f"{_fmt(s.get('mean'), k)} ± {_fmt(s.get('std'), k)}",
                f"[{_fmt(lo, k)}, {_fmt(hi, k)}]",
                _fmt(s.get("median"), k),
                str(s.get("n", 0)),
            ]
        )
    return rows


METRIC_HEADER = ["Metric", "Mean ± SD", "95% CI (bootstrap)", "Median", "n"]


def _count_rows(counts: dict) -> list[list[str]]:
    rate = counts.get("empty_gt_correct_rate", math.nan)
    return [
        ["Images", str(counts["n_images"])],
        ["Non-empty ground truth (scored for overlap / distance)", str(counts["n_gt_nonempty"])],
        ["Empty ground truth (excluded from overlap / distance)", str(counts["n_empty_gt"])],
        ["  of which predicted empty (correct)", f"{counts['n_empty_gt_correct']} ({_fmt(rate, 3)})"],
        ["  of which with false-positive pixels", str(counts["n_empty_gt_false_positive"])],
        ["Missed (non-empty GT, empty prediction; Dice 0, distances = image diagonal)", str(counts["n_missed"])],
    ]


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _save(fig, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=fig.dpi)


def dice_histogram(result: EvalResult, path: Path) -> Path:
    """Histogram of per-image Dice (macro Dice for multi-class), with the mean marked."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    d = np.asarray(result.per_image["dice"], dtype=float) if "dice" in result.per_image else np.empty(0)
    d = d[np.isfinite(d)]
    fig = Figure(figsize=(5.0, 3.2), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    if d.size:
        ax.hist(d, bins=np.linspace(0, 1, 21), color="#0072B2", edgecolor="white")
        ax.axvline(d.mean(), color="#D55E00", lw=1.5, label=f"mean {d.mean():.3f}")
        ax.legend(loc="upper left", frameon=False)
    else:
        ax.text(0.5, 0.5, "no image with a non-empty ground truth", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlim(0, 1)
    ax.set_xlabel("Dice" + (" (macro over classes)" if result.classes > 1 else ""))
    ax.set_ylabel("images")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"Per-image Dice (n = {d.size})")
    _save(fig, path)
    return path


def gallery_figure(item: GalleryItem, title: str, path: Path, classes: int = 1) -> Path:
    """Four panels: image, ground truth, prediction, error map (TP / FP / FN).

    Binary masks (``classes=1``, any non-zero value is foreground) get one colour each; label maps
    get one palette colour per class.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    gt, pred = np.asarray(item.gt), np.asarray(item.pred)
    if classes == 1:
        gt, pred = gt != 0, pred != 0
    gcol = None if classes > 1 else GT_COLOR
    pcol = None if classes > 1 else PRED_COLOR
    panels = [
        ("image", to_rgb_uint8(item.image)),
        ("ground truth", contour_overlay(overlay_image(item.image, gt, gcol, 0.35), gt, gcol)),
        ("prediction", contour_overlay(overlay_image(item.image, pred, pcol, 0.35), pred, pcol)),
        ("errors", error_map(item.image, gt, pred)),
    ]
    fig = Figure(figsize=(12.0, 3.6), dpi=100, layout="constrained")
    axes = fig.subplots(1, 4)
    for ax, (name, rgb) in zip(axes, panels):
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(name)
        ax.set_axis_off()
    handles = [Patch(color=np.array(c) / 255, label=n) for n, c in (("TP", TP_COLOR), ("FP", FP_COLOR), ("FN", FN_COLOR))]
    fig.legend(handles=handles, loc="outside lower right", ncol=3, frameon=False, title="errors:", alignment="left")
    fig.suptitle(title)
    _save(fig, path)
    return path


def _safe(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem)[:80] or "image"


def _write_gallery(result: EvalResult, gallery: Gallery, out: Path) -> list[tuple[str, str, str]]:
    """Render best/median/worst; returns (label, stem, relative png path)."""
    if callable(gallery):
        picks, get = select_gallery_stems(result), gallery
    else:
        by_stem = {g.stem: g for g in gallery}
        picks, get = select_gallery_stems(result, list(by_stem)), by_stem.__getitem__
    if not picks:
        return []
    (out / "gallery").mkdir(exist_ok=True)
    df = result.per_image.set_index("stem")
    done = []
    for label, stem in picks.items():
        row = df.loc[stem]
        if isinstance(row, type(df)):  # duplicate stems: take the first
            row = row.iloc[0]
        title = (
            f"{label}: {stem}   Dice {_fmt(row['dice'])}   "
            f"HD95 {_fmt(row['hd95'], 2)} {result.units}   ASSD {_fmt(row['assd'], 2)} {result.units}"
        )
        rel = f"gallery/{label}_{_safe(stem)}.png"
        gallery_figure(get(stem), title, out / rel, classes=result.classes)
        done.append((label, stem, rel))
    return done


AGREEMENT_HEADER = ["Quantity", "n", "Mean abs error", "Bias", "95% limits of agreement"]
BLAND_ALTMAN = "bland_altman.png"  # written by sonoseg.evaluate.agreement.write_agreement


def agreement_rows(stats: dict) -> list[list[str]]:
    """One row per compared quantity of ``measurement_agreement`` (pairs with both values only)."""
    rows = []
    for k, a in stats.items():
        if a.get("n"):
            rows.append([k, str(a["n"]), f"{_fmt(a['mean_abs_error'], 2)} {a['unit']}", f"{a['bias']:+.2f}",
                         f"[{_fmt(a['loa_low'], 2)}, {_fmt(a['loa_high'], 2)}]"])
    return rows


AGREEMENT_HEAD = ("Measurement agreement (differences: quantity = predicted - truth mask; "
                  "'quantity vs COL' = predicted (or truth mask) - labels.csv reference column)")


def _sections(result: EvalResult) -> list[tuple[str, list[str], list[list[str]]]]:
    """(heading, header, rows) for every table of the report."""
    what = "binary" if result.classes == 1 else f"macro mean over classes 1..{result.classes - 1}"
    secs = [
        (f"Metrics ({what}; distances in {result.units})", METRIC_HEADER, _metric_rows(result.aggregate, result.units)),
        ("Cases", ["", "count"], _count_rows(result.counts)),
    ]
    for c in sorted(result.per_class):
        secs.append((f"Class {c}", METRIC_HEADER, _metric_rows(result.per_class[c], result.units)))
        secs.append((f"Class {c}: cases", ["", "count"], _count_rows(result.counts_per_class[c])))
    return secs


def write_report(result: EvalResult, out_dir: str | Path, gallery: Optional[Gallery] = None) -> dict[str, Path]:
    """Write report.md, report.html, dice_hist.png and gallery/*.png into ``out_dir``.

    ``gallery`` is a list of :class:`GalleryItem` (best/median/worst are chosen among them) or a
    callable ``stem -> GalleryItem`` (called for the three chosen stems only, so a caller need not
    keep every image in memory).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hist = dice_histogram(result, out / "dice_hist.png")
    shots = _write_gallery(result, gallery, out) if gallery is not None else []
    secs = _sections(result)
    notes = [CONVENTIONS] + list(result.notes)

    md = ["# sonoseg evaluation report", ""]
    md.append(f"{result.counts['n_images']} images; HD95 / ASSD in **{result.units}**; "
              f"95% CI: percentile bootstrap of the mean ({result.n_boot} resamples, seed {result.seed}).")  # fmt: skip
    for head, header, rows in secs:
        md += ["", f"## {head}", "", _md_table(header, rows)]
    ma_rows = agreement_rows(result.measurement_agreement or {})
    ba = out / BLAND_ALTMAN if ma_rows and (out / BLAND_ALTMAN).is_file() else None
    if ma_rows:
        md += ["", f"## {AGREEMENT_HEAD}", "", _md_table(AGREEMENT_HEADER, ma_rows)]
        md += ["", f"![Bland-Altman]({BLAND_ALTMAN})"] if ba else []
    md += ["", "## Per-image Dice", "", f"![Per-image Dice]({hist.name})"]
    if shots:
        md += ["", "## Gallery (best, median, worst by Dice)", ""]
        md += [f"### {label}: {stem}\n\n![{label}]({rel})\n" for label, stem, rel in shots]
    md += ["", "## Conventions", ""] + [f"- {n}" for n in notes]
    md_path = out / "report.md"
    md_path.write_text("\n".join(md) + "\n")

    e = html.escape
    h = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>sonoseg evaluation report</title>',
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;"
        "text-align:left}th{background:#f2f2f2}img{max-width:100%}</style></head><body>",
        "<h1>sonoseg evaluation report</h1>",
        f"<p>{result.counts['n_images']} images; HD95 / ASSD in <b>{e(result.units)}</b>; 95% CI: percentile "
        f"bootstrap of the mean ({result.n_boot} resamples, seed {result.seed}).</p>",
    ]
    for head, header, rows in secs:
        h += [f"<h2>{e(head)}</h2>", _html_table(header, rows)]
    if ma_rows:
        h += [f"<h2>{e(AGREEMENT_HEAD)}</h2>", _html_table(AGREEMENT_HEADER, ma_rows)]
        h += [f'<img src="{BLAND_ALTMAN}" alt="Bland-Altman plots">'] if ba else []
    h += ["<h2>Per-image Dice</h2>", f'<img src="{e(hist.name)}" alt="Per-image Dice histogram">']
    if shots:
        h.append("<h2>Gallery (best, median, worst by Dice)</h2>")
        h += [f'<h3>{e(label)}: {e(stem)}</h3><img src="{e(rel)}" alt="{e(label)}">' for label, stem, rel in shots]
    h += ["<h2>Conventions</h2><ul>"] + [f"<li>{e(n)}</li>" for n in notes] + ["</ul></body></html>"]
    html_path = out / "report.html"
    html_path.write_text("\n".join(h) + "\n")

    paths = {"md": md_path, "html": html_path, "histogram": hist}
    paths.update({f"gallery_{label}": out / rel for label, _, rel in shots})
    return paths
