"""Per-organ evaluation of a 3D model: Dice and IoU (MONAI), HD95 and ASSD in mm on the volume's own
anisotropic spacing (MONAI, via :func:`sonoseg.metrics.surface.hd95_assd`), volume (mL) and volume
error; mean and bootstrap 95% CI over cases. Predictions are scored in the ORIGINAL image grid, where
the ground truth lives. An organ absent from both ground truth and prediction is not scored; absent
from one only, it scores Dice = IoU = 0 and no distance (counted as missed / false positive)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import numpy as np


def organ_metrics(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float], names: Mapping[int, str]) -> list[dict]:
    """Rows for each named class; ``spacing`` in the arrays' axis order (mm)."""
    import torch
    from monai.metrics import compute_dice, compute_iou

    from sonoseg.metrics.surface import hd95_assd

    voxel_ml = float(np.prod(spacing)) / 1000.0
    rows = []
    for c in sorted(names):
        p, g = pred == c, gt == c
        vp, vg = float(p.sum()) * voxel_ml, float(g.sum()) * voxel_ml
        row = {"label": int(c), "organ": names[c], "gt_ml": vg, "pred_ml": vp, "volume_error_ml": vp - vg,
               "volume_error_pct": (100.0 * (vp - vg) / vg) if vg else math.nan,
               "dice": math.nan, "iou": math.nan, "hd95_mm": math.nan, "assd_mm": math.nan,
               "status": "absent" if not g.any() and not p.any() else "missed" if not p.any() else
               "false_positive" if not g.any() else "scored"}
        if row["status"] != "absent":
            yp = torch.from_numpy(p[None, None].astype(np.float32))
            yg = torch.from_numpy(g[None, None].astype(np.float32))
            row["dice"] = float(compute_dice(yp, yg, include_background=True, ignore_empty=False).reshape(-1)[0])
            row["iou"] = float(compute_iou(yp, yg, include_background=True, ignore_empty=False).reshape(-1)[0])
            if row["status"] == "scored":
                row["hd95_mm"], row["assd_mm"] = hd95_assd(p, g, spacing)
        rows.append(row)
    return rows


METRICS = ("dice", "iou", "hd95_mm", "assd_mm", "volume_error_ml", "volume_error_pct")


def summarize_organs(rows: list[dict], n_boot: int = 1000) -> dict:
    """organ -> metric -> {"mean","std","ci95","n","median"} over cases (scored rows)."""
    from sonoseg.evaluate.aggregate import summarize

    out: dict = {}
    for organ in dict.fromkeys(r["organ"] for r in rows):
        rs = [r for r in rows if r["organ"] == organ and r["status"] != "absent"]
        out[organ] = {m: summarize([r[m] for r in rs], n_boot=n_boot) for m in METRICS}
        out[organ]["n_cases"] = len(rs)
        out[organ]["n_missed"] = sum(r["status"] == "missed" for r in rs)
        out[organ]["n_false_positive"] = sum(r["status"] == "false_positive" for r in rs)
    scored = [r for r in rows if r["status"] != "absent"]
    out["_mean_over_organs"] = {m: summarize([np.nanmean([r[m] for r in scored if r["case"] == c]) for c in
                                             dict.fromkeys(r["case"] for r in scored)], n_boot=n_boot)
                                for m in ("dice", "iou")}
    return out


def _overlay_pair(image, gt, pred, names, path: Path, vcfg) -> Path:
    """Axial slice with the most ground-truth voxels: ground truth | prediction."""
    from sonoseg.infer.outputs import render_overlay, write_png

    import cv2

    z = int(np.argmax((gt > 0).reshape(gt.shape[0], -1).sum(1)))
    lo, hi = vcfg.intensity_range()
    img = (np.clip((image.array[z].astype(np.float32) - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    a = render_overlay(img, gt[z], caption=[f"ground truth, slice {z}"])
    b = render_overlay(img, pred[z], caption=["prediction"])
    return write_png(cv2.cvtColor(np.concatenate([a, b], 1), cv2.COLOR_RGB2BGR), path, "overlay")


def evaluate_volumes(dataset: str | Path, model: str | Path, out: str | Path, split_file: Optional[str | Path] = None,
                     split: str = "test", threads: Optional[int] = None, n_boot: int = 1000,
                     log: Callable[[str], None] = print, keep_largest: Optional[bool] = None) -> dict:
    """Score ``model`` on the dataset's cases (all, or ``split`` of ``split_file``); writes metrics.json,
    per_case.csv, overlays/ and report.html into ``out``; returns metrics.json's content."""
    from sonoseg.data import read_split_csv
    from sonoseg.data.volumes import discover_volumes, load_case
    from sonoseg.infer.volume import VolumePredictor
    from sonoseg.system import apply_threads, resolve_threads

    apply_threads(resolve_threads(threads, warn=log))
    out = Path(out)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    predictor = VolumePredictor.from_checkpoint(model)
    if keep_largest is not None:
        predictor.keep_largest = keep_largest
    vcfg = predictor.config.volume
    cases = [s for s in discover_volumes(dataset) if s.mask_path is not None]
    if split_file:
        a = read_split_csv(Path(split_file))
        cases = [s for s in cases if a.get(s.stem) == split]
    if not cases:
        from sonoseg.errors import ConfigError

        raise ConfigError(f"{dataset}: no cases with masks to evaluate" + (f" in split {split!r}" if split_file else ""))
    rows, failed = [], []
    for s in cases:
        try:
            image, gt = load_case(s, vcfg)
            pred = predictor.predict(image)
        except Exception as exc:  # noqa: BLE001 - one bad case is reported, the rest are scored
            from sonoseg.errors import reason

            failed.append({"case": s.stem, "error": reason(exc)})
            log(f"FAIL {s.stem}: {reason(exc)}")
            continue
        case_rows = organ_metrics(pred.labels, gt, image.spacing, predictor.names)
        for r in case_rows:
            r["case"] = s.stem
        rows += case_rows
        _overlay_pair(image, gt, pred.labels, predictor.names, out / "overlays" / f"{s.stem}.png", vcfg)
        scored = [r["dice"] for r in case_rows if r["status"] != "absent"]
        log(f"ok   {s.stem}: mean organ Dice {np.nanmean(scored) if scored else float('nan'):.4f} ({pred.seconds:.1f} s)")
    result = {"model": str(model), "model_version": predictor.model_version, "n_cases": len(cases) - len(failed),
              "keep_largest": predictor.keep_largest,
              "failed": failed, "organs": summarize_organs(rows, n_boot) if rows else {},
              "note": __doc__.split("\n\n")[0].replace("\n", " ")}
    (out / "metrics.json").write_text(json.dumps(result, indent=1, default=float))
    cols = ["case", "label", "organ", "status", "dice", "iou", "hd95_mm", "assd_mm", "gt_ml", "pred_ml",
            "volume_error_ml", "volume_error_pct"]
    with open(out / "per_case.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    _report(result, out)
    return result


def _report(result: dict, out: Path) -> Path:
    """Minimal HTML: per-organ table and the overlays."""
    import html

    def cell(a):
        return "-" if not a or a.get("n", 0) == 0 else f"{a['mean']:.3f} [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}]"

    lines = ["<html><head><meta charset='utf-8'><title>sonoseg 3D evaluation</title></head><body>",
             f"<h1>{html.escape(str(result['model_version']))}: {result['n_cases']} case(s)</h1>",
             "<table border=1 cellpadding=4><tr><th>organ</th><th>Dice</th><th>IoU</th><th>HD95 mm</th><th>ASSD mm</th>"
             "<th>volume error mL</th><th>n</th></tr>"]
    for organ, m in result["organs"].items():
        if organ.startswith("_"):
            continue
        lines.append(f"<tr><td>{html.escape(organ)}</td>" + "".join(
            f"<td>{cell(m[k])}</td>" for k in ("dice", "iou", "hd95_mm", "assd_mm", "volume_error_ml"))
            + f"<td>{m['n_cases']}</td></tr>")
    lines.append("</table>")
    for p in sorted((out / "overlays").glob("*.png")):
        lines.append(f"<h3>{html.escape(p.stem)}</h3><img src='overlays/{html.escape(p.name)}' width=800>")
    lines.append("</body></html>")
    path = out / "report.html"
    path.write_text("\n".join(lines))
    return path
