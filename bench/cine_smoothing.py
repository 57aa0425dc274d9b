#!/usr/bin/env python
"""Frame-to-frame stability of the largest structure on real cine loops, with and without
``--temporal-window``.

    .venv/bin/python bench/cine_smoothing.py [--windows 1,3,5]

Cines: the multi-frame ultrasound files of pydicom / pydicom-data (examples_ybr_color: 30 frames,
color3d_jpeg_baseline: 120 frames). Metric per cine: |A(t+1) - A(t)| / max(A(t), A(t+1)) of the
largest structure's area, median and 95th percentile over consecutive frame pairs where either frame
has a structure. Shipped model (breast), so the structures are not anatomy: this measures flicker,
not accuracy. Writes bench/results/cine_smoothing.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--windows", default="1,3,5")
    ap.add_argument("--files", default="examples_ybr_color.dcm,color3d_jpeg_baseline.dcm")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    a = ap.parse_args()
    from conftest import _dicom_dirs

    from sonoseg.infer.run import predict_inputs

    files = [d / n for n in a.files.split(",") for d in _dicom_dirs() if (d / n).is_file()]
    result = {"metric": "relative change of the largest area between consecutive frames", "cines": {}}
    for f in files:
        rows = {}
        for w in (int(x) for x in a.windows.split(",")):
            t0 = time.time()
            with tempfile.TemporaryDirectory() as tmp:
                p = predict_inputs([f], tmp, threads=2, log=lambda m: None, temporal_window=w, domain=False, write_seg=False)
                meas = json.loads(Path(p["results"][0]["measurements"]).read_text())
            areas = np.array([max((s["area"] for s in fr["structures"]), default=0.0) for fr in meas["frames"]])
            a0, a1 = areas[:-1], areas[1:]
            keep = np.maximum(a0, a1) > 0
            rel = np.abs(a1 - a0)[keep] / np.maximum(a0, a1)[keep]
            rows[w] = {"frames": len(areas), "pairs": int(keep.sum()),
                       "median_rel_change": float(np.median(rel)) if rel.size else None,
                       "p95_rel_change": float(np.percentile(rel, 95)) if rel.size else None,
                       "seconds": round(time.time() - t0, 1)}
            print(f.name, "window", w, rows[w], flush=True)
        result["cines"][f.name] = rows
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "cine_smoothing.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
