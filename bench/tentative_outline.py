"""What the tentative outline changes: two `sonoseg evaluate` folders of the same model and images, one with
the outline (the default for the shipped tiers) and one with ``--no-tentative-outline``.

Usage:
    python bench/tentative_outline.py ON_DIR OFF_DIR [--out RESULT.json]

Per source (sub-folders with per_image.csv and per_image_class.csv, or the folder itself): lesion Dice
both ways, lesion images missed by the mask both ways, lesion images newly outlined and how many of
those overlap the lesion (Dice > 0) with their mean Dice, normal images newly outlined. Rule 2 of
docs/breast_v4/tentative_outline_rule.md reads these. Prints a markdown table; writes JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd


def _folders(d: Path) -> dict[str, Path]:
    if (d / "per_image.csv").is_file():
        return {d.name: d}
    return {s.name: s for s in sorted(d.iterdir()) if (s / "per_image.csv").is_file()}


def _table(d: Path) -> pd.DataFrame:
    img = pd.read_csv(d / "per_image.csv", dtype={"stem": str})
    cls = pd.read_csv(d / "per_image_class.csv", dtype={"stem": str})
    return img.merge(cls[["stem", "true_class"] + [c for c in ("tentative_outline",) if c in cls]], on="stem")


def compare(on_dir: Path, off_dir: Path) -> dict:
    out = {}
    on_sources, off_sources = _folders(on_dir), _folders(off_dir)
    for source in on_sources:
        on, off = _table(on_sources[source]), _table(off_sources[source])
        both = on.merge(off, on="stem", suffixes=("_on", "_off"))
        if len(both) != len(on) or len(both) != len(off):
            raise SystemExit(f"error: {source}: the two evaluations scored different images")
        lesion = ~both["gt_empty_on"].astype(bool)
        new = both["pred_empty_off"].astype(bool) & ~both["pred_empty_on"].astype(bool)
        hit = new & lesion & (both["dice_on"] > 0)
        out[source] = {
            "n_lesion": int(lesion.sum()), "n_normal": int((~lesion).sum()),
            "dice_on": float(both.loc[lesion, "dice_on"].mean()), "dice_off": float(both.loc[lesion, "dice_off"].mean()),
            "missed_by_mask_on": float(both.loc[lesion, "pred_empty_on"].astype(bool).mean()),
            "missed_by_mask_off": float(both.loc[lesion, "pred_empty_off"].astype(bool).mean()),
            "lesions_newly_outlined": int((new & lesion).sum()), "of_which_overlap": int(hit.sum()),
            "dice_of_new_outlines": float(both.loc[new & lesion, "dice_on"].mean()) if (new & lesion).any() else None,
            "normals_newly_outlined": int((new & ~lesion).sum()),
        }
    return out


def markdown(res: dict, title: str) -> str:
    lines = [f"### {title}", "", "| source | lesion Dice without / with | missed by the mask without / with | lesions "
             "newly outlined (overlapping; their Dice) | normals newly outlined |", "| --- | ---: | ---: | ---: | ---: |"]
    for s, v in res.items():
        d = "-" if v["dice_of_new_outlines"] is None else f"{v['dice_of_new_outlines']:.3f}"
        lines.append(f"| {s} | {v['dice_off']:.3f} / {v['dice_on']:.3f} | {v['missed_by_mask_off']:.1%} / "
                     f"{v['missed_by_mask_on']:.1%} | {v['lesions_newly_outlined']} of {v['n_lesion']} "
                     f"({v['of_which_overlap']}; {d}) | {v['normals_newly_outlined']} of {v['n_normal']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("on", type=Path, help="evaluate folder with the tentative outline")
    ap.add_argument("off", type=Path, help="evaluate folder of the same run with --no-tentative-outline")
    ap.add_argument("--title", default="Tentative outline: without / with")
    ap.add_argument("--out", type=Path, help="JSON to write")
    a = ap.parse_args(argv)
    res = compare(a.on, a.off)
    print(markdown(res, a.title))
    if a.out:
        a.out.write_text(json.dumps({"on": str(a.on), "off": str(a.off), "sources": res}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
