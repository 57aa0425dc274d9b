#!/usr/bin/env python
"""How well int8 masks agree with fp32 masks, per quantisation scheme, on this CPU.

For each scheme the shipped model (or --model) is quantised as predict's fast path does (calibrated
on the frames shipped in sonoseg/assets/calibration) and its masks are compared with fp32 ONNX masks
on a dataset split (default: BUSI validation split of configs/busi_split.csv): mean / 5th percentile /
worst per-image Dice (sonoseg.export.per_image_agreement), and model-only latency at 1 and 2 threads.
Prints a table and writes bench/results/int8_agreement_<cpu>.json.

    .venv/bin/python bench/int8_agreement.py ../shared/data/busi configs/busi_split.csv
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

import numpy as np


def latency_ms(path: Path, x: np.ndarray, threads: int, n: int = 40) -> float:
    from sonoseg.runtime.backends import create_backend

    be = create_backend("onnx", path, threads=threads)
    for _ in range(5):
        be.run(x)
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        be.run(x)
        ts.append(time.perf_counter() - t)
    return float(np.median(ts) * 1e3)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("split_file", type=Path)
    ap.add_argument("--split", default="val")
    ap.add_argument("--model", type=Path, help="checkpoint (default: the shipped model)")
    ap.add_argument("--schemes", default="u8s8,u8s8-reduced,u8u8")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    a = ap.parse_args(argv)

    from sonoseg.export import per_image_agreement, predict_masks, split_grids
    from sonoseg.runtime.onnx_export import export_onnx
    from sonoseg.runtime.quantize import default_scheme, quantize_static_int8
    from sonoseg.runtime.backends import create_backend, load_torch_model
    from sonoseg.infer.default_model import default_model_path
    from sonoseg.runtime.calibration import calibration_grids
    from sonoseg.system import cpu_info

    ckpt = a.model or default_model_path()
    model, cfg = load_torch_model(ckpt)
    val = [g for g, _ in split_grids(a.dataset, a.split_file, a.split, cfg)]
    calib, _ = calibration_grids(cfg)
    x = np.ascontiguousarray(np.stack(val[:1])[:, None])
    cpu = cpu_info()
    rows = []
    with tempfile.TemporaryDirectory() as td:
        fp32 = Path(td) / "m.onnx"
        export_onnx(model, fp32, config=cfg)
        ref = predict_masks(create_backend("onnx", fp32, threads=2).run, val)
        rows.append({"scheme": "fp32", "mean": 1.0, "p5": 1.0, "worst": 1.0,
                     "ms_1t": latency_ms(fp32, x, 1), "ms_2t": latency_ms(fp32, x, 2)})
        for scheme in a.schemes.split(","):
            q = Path(td) / f"{scheme}.onnx"
            quantize_static_int8(fp32, q, calib, scheme=scheme)
            per = per_image_agreement(ref, predict_masks(create_backend("onnx", q, threads=2).run, val))
            rows.append({"scheme": scheme, "mean": float(per.mean()), "p5": float(np.percentile(per, 5)),
                         "worst": float(per.min()), "ms_1t": latency_ms(q, x, 1), "ms_2t": latency_ms(q, x, 2)})
    print(f"int8 vs fp32 masks on {len(val)} {a.split} images; {cpu.label()}; default scheme here: {default_scheme()}")
    print(f"{'scheme':<14}{'mean':>8}{'p5':>8}{'worst':>8}{'ms 1t':>9}{'ms 2t':>9}")
    for r in rows:
        print(f"{r['scheme']:<14}{r['mean']:8.4f}{r['p5']:8.4f}{r['worst']:8.4f}{r['ms_1t']:9.2f}{r['ms_2t']:9.2f}")
    a.out.mkdir(parents=True, exist_ok=True)
    tag = re.sub(r"[^a-z0-9]+", "_", cpu.label().lower()).strip("_")
    out = a.out / f"int8_agreement_{tag}.json"
    out.write_text(json.dumps({"cpu": cpu.summary(), "default_scheme": default_scheme(), "model": str(ckpt),
                               "split": a.split, "n_images": len(val), "n_calibration": len(calib), "rows": rows,
                               "note": "latency is model-only, batch 1, 256x256, median of 40 runs"}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
