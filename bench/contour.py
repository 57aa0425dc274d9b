#!/usr/bin/env python
"""Which contour convention measures head circumference right: ``edge`` vs ``centre`` against the true HC.

    PYTHONPATH=src .venv/bin/python bench/contour.py [--n 40] [--pixel-sizes 0.1,0.25]

Phantom (sonoseg.data.fetal_phantom): random elliptical heads on a 540 x 800 frame (HC18's size),
semi-axes 22-37 % of the short side, axis ratio 0.7-0.85, any orientation, at two pixel sizes; the
true HC is Ramanujan's circumference of the axes in mm (independent of sonoseg's measuring code).
Each head is rasterised both ways annotations are made: ``drawn`` (outline drawn on the curve with
cv2.ellipse and filled: HC18-style) and ``centre-inside`` (pixels whose centre is inside: filled
polygons, skimage.draw). Each mask is measured by predict's code path (measure_frame, biometry) with
both contours, with the fetal config's ellipse fit off and on. A network trained on such masks
reproduces their boundary, so the mask kind, not the model, decides the convention.
Writes bench/results/contour.json and contour.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def run(n: int, pixel_sizes: list[float], seed: int = 0, shape=(540, 800)) -> list[dict]:
    from sonoseg.data.fetal_phantom import head_mask, random_head
    from sonoseg.infer.frames import MeasureOptions, measure_frame

    rng = np.random.default_rng(seed)
    heads = [random_head(rng, shape) for _ in range(n)]
    rows = []
    for px in pixel_sizes:
        for style in ("drawn", "centre-inside"):
            masks = [head_mask(shape, h, style) for h in heads]
            truth = np.array([h.circumference(px) for h in heads])
            for fit in (False, True):
                for contour in ("edge", "centre"):
                    opts = MeasureOptions(spacing=(px, px), contour=contour, biometry=True, ellipse_fit=fit)
                    hc = np.array([measure_frame(m, 0, opts)[1]["biometry"]["hc"] for m in masks])
                    d = hc - truth
                    rows.append({"pixel_mm": px, "mask": style, "ellipse_fit": fit, "contour": contour, "n": n,
                                 "mae_mm": round(float(np.abs(d).mean()), 3), "bias_mm": round(float(d.mean()), 3),
                                 "bias_percent": round(float((d / truth).mean() * 100), 3),
                                 "max_abs_mm": round(float(np.abs(d).max()), 3),
                                 "mean_true_hc_mm": round(float(truth.mean()), 1)})
    return rows


def verdict(rows: list[dict]) -> dict:
    """For each mask kind, the contour with the smaller MAE at every pixel size (None if it varies)."""
    out = {}
    for style in ("drawn", "centre-inside"):
        picks = set()
        for px in {r["pixel_mm"] for r in rows}:
            for fit in (False, True):
                cand = [r for r in rows if r["mask"] == style and r["pixel_mm"] == px and r["ellipse_fit"] == fit]
                picks.add(min(cand, key=lambda r: r["mae_mm"])["contour"])
        out[style] = picks.pop() if len(picks) == 1 else None
    return out


def markdown(rows: list[dict], best: dict) -> str:
    lines = ["# Contour convention vs true head circumference (bench/contour.py)", "",
             "| pixel (mm) | mask | ellipse fit | contour | n | MAE (mm) | bias (mm) | bias (%) | max |abs| (mm) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['pixel_mm']} | {r['mask']} | {'on' if r['ellipse_fit'] else 'off'} | {r['contour']} | "
                     f"{r['n']} | {r['mae_mm']:.2f} | {r['bias_mm']:+.2f} | {r['bias_percent']:+.2f} | {r['max_abs_mm']:.2f} |")
    lines += ["", "Closest to the truth: " + "; ".join(f"{k} masks -> `{v}`" for k, v in best.items())]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--pixel-sizes", default="0.1,0.25")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    a = ap.parse_args()
    rows = run(a.n, [float(v) for v in a.pixel_sizes.split(",")])
    best = verdict(rows)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "contour.json").write_text(json.dumps({"rows": rows, "closest": best}, indent=1))
    md = markdown(rows, best)
    (a.out / "contour.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
