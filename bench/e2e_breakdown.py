#!/usr/bin/env python
"""Where one frame's time goes: every stage of decoded uint8 frame -> mask in original pixels.

Runs the shipped model (or --model) through the same Predictor as ``sonoseg predict`` on real
full-size B-mode frames (--dataset images, default BUSI under ../shared/data) and times each stage
separately: ROI + uint8, 3x3 median, CLAHE, normalise + letterbox resize, the network, and
sigmoid + map back to the original pixels + threshold. The end-to-end row is timed as one call
(``Predictor.predict``), so it includes what the stage rows miss (Python glue).

    .venv/bin/python bench/e2e_breakdown.py                     # auto backend, 2 threads
    .venv/bin/python bench/e2e_breakdown.py --backend onnx --threads 1

Writes bench/results/e2e_breakdown.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def _median_ms(fn, frames, rounds: int) -> float:
    import numpy as np

    per = []
    for _ in range(rounds):
        for f in frames:
            t = time.perf_counter()
            fn(f)
            per.append(time.perf_counter() - t)
    return float(np.median(per) * 1000.0)


def _frames(dataset: Path, n: int = 24):
    import cv2

    files = sorted((dataset / "images").glob("*.png"))[:: max(1, len(list((dataset / "images").glob("*.png"))) // n)]
    if not files:
        raise SystemExit(f"{dataset}: no images/*.png (give --dataset)")
    return [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files[:n]]


def measure(model, backend: str, threads: int, rounds: int, dataset: Path) -> dict:
    import cv2
    import numpy as np

    from sonoseg.infer.predictor import Predictor
    from sonoseg.preprocess import preprocess_image
    from sonoseg.preprocess.geometry import GridTransform
    from sonoseg.preprocess.roi import find_roi
    from sonoseg.preprocess.steps import affine_normalization, apply_clahe, median_filter, to_uint8

    cv2.setNumThreads(threads)
    pred = Predictor.from_path(model, backend=backend, threads=threads)
    pc = pred.config.preprocess
    frames = _frames(dataset)
    for f in frames[:3]:
        pred.predict(f)  # warm-up (builds/loads the model, first-call allocations)

    def roi_u8(f):
        y0, x0, y1, x1 = find_roi(f, None, pc.roi)
        return to_uint8(f[y0:y1, x0:x1])

    work = [apply_clahe(median_filter(roi_u8(f), pc.median_kernel), pc.clahe_clip_limit, pc.clahe_tile_grid)
            for f in frames]

    def norm_resize(w):
        t = GridTransform.build(w.shape, pc.size, None, pc.resize_mode)
        shift, scale = affine_normalization(w, pc.normalize)
        g = t.roi_to_grid(w.astype(np.float32), "auto")
        return (g - shift) * scale

    pre = [preprocess_image(f, pc) for f in frames]
    x = [np.ascontiguousarray(p.image[None, None]) for p in pre]
    probs = [pred._run_grid(p.image[None])[0][0] for p in pre]
    pairs = list(zip(probs, [p.transform for p in pre], [p.image for p in pre]))

    rows = {
        "ROI + uint8": _median_ms(roi_u8, frames, rounds),
        "3x3 median": _median_ms(lambda f: median_filter(f, pc.median_kernel), [roi_u8(f) for f in frames], rounds),
        "CLAHE": _median_ms(lambda f: apply_clahe(f, pc.clahe_clip_limit, pc.clahe_tile_grid),
                            [median_filter(roi_u8(f), pc.median_kernel) for f in frames], rounds),
        "normalise + resize": _median_ms(norm_resize, work, rounds),
        "network (backend.run_all)": _median_ms(lambda a: pred.backend.run_all(a), x, rounds),
        "sigmoid, to original pixels, threshold": _median_ms(lambda t: pred._finish(*t), pairs, rounds),
    }
    e2e = _median_ms(pred.predict, frames, rounds)
    return {"backend": pred.backend.kind, "threads": threads, "stages_ms": {k: round(v, 3) for k, v in rows.items()},
            "e2e_ms": round(e2e, 3), "e2e_fps": round(1000.0 / e2e, 1),
            "frame_shape": [int(v) for v in frames[0].shape], "n_frames": len(frames)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, help="checkpoint / .onnx (default: the shipped model)")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--dataset", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared/data/busi")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    res = measure(args.model, args.backend, args.threads, args.rounds, args.dataset)
    from sonoseg.bench.benchmark import machine_info

    info = machine_info()
    lines = [f"Machine: {info.get('cpu_label', info.get('cpu'))}; 1-min load {info.get('loadavg_1min', 0):.2f}; "
             f"backend {res['backend']}, {res['threads']} thread(s); {res['n_frames']} frames, "
             f"first {res['frame_shape'][0]}x{res['frame_shape'][1]}", "",
             "| stage | median ms/frame |", "|---|--:|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in res["stages_ms"].items()]
    lines.append(f"| **end to end** (Predictor.predict) | **{res['e2e_ms']:.2f}** ({res['e2e_fps']:.0f} frames/s) |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "e2e_breakdown.json").write_text(json.dumps({"machine": info, **res}, indent=2))
    (args.out / "e2e_breakdown.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
