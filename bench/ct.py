#!/usr/bin/env python
"""3D CT sliding-window inference: seconds and peak memory per volume, by phase.

    PYTHONPATH=src .venv/bin/python bench/ct.py                    # table on stdout, JSON in bench/results/ct.json
    PYTHONPATH=src .venv/bin/python bench/ct.py --threads 1 2 --model models/ct_organs_fit.pt

Rows: the real 3 mm abdominal CT ``example_ct.nii.gz`` (122x101x112, from ../shared/data/ct_totalseg;
skipped when absent) and a synthetic 512x512x300 CT (0.8x0.8x1.5 mm, like a clinical abdomen scan)
resampled by the model's own preprocessing to its 3 mm grid. Each row runs in a fresh process, so its
peak RSS (ru_maxrss) is that prediction's alone (model load included; "base" is the RSS before reading
the volume). Phases: preprocess (orientation, spacing, window, crop), network (SlidingWindowInferer,
Gaussian blending), invert (class probabilities back to the original grid + argmax). Speed does not
depend on the weights: without --model the committed fitted model is used, else an untrained one of the
same recipe. Anchor from the issue: TotalSegmentator --fast (3 mm) takes 57 s for 512x512x807 on a
desktop CPU.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "ct_totalseg" / "example_ct.nii.gz"
DEFAULT_MODEL = REPO / "models" / "ct_organs_fit.pt"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _synthetic(shape_xyz=(512, 512, 300), spacing_xyz=(0.8, 0.8, 1.5)):
    from sonoseg.data.volume_phantom import ORGANS, Organ, make_phantom

    big = tuple(Organ(o.label, o.name, tuple(3 * c for c in o.centre_mm), tuple(3 * r for r in o.radii_mm), o.hu)
                for o in ORGANS)
    image, _ = make_phantom(shape_xyz, spacing_xyz, organs=big, noise_hu=15.0)
    return image


def child(args) -> dict:
    import torch

    from sonoseg.system import apply_threads

    apply_threads(args.threads)
    from sonoseg.infer.volume import VolumePredictor

    if args.model and Path(args.model).is_file():
        pred = VolumePredictor.from_checkpoint(args.model)
        which = str(Path(args.model).name)
    else:
        from sonoseg.config import load_config
        from sonoseg.models import create_model_from_config

        cfg = load_config(REPO / "configs" / "ct_organs_fit.yaml")
        cfg.model.classes = len(cfg.volume.labels) + 1
        cfg.model.params["spatial_dims"] = 3
        pred = VolumePredictor(create_model_from_config(cfg.model), cfg)
        which = "untrained (configs/ct_organs_fit.yaml)"
    base = _rss_mb()
    if args.row == "real":
        from sonoseg.preprocess.volume import read_volume

        vol = read_volume(DATA)
    else:
        from sonoseg.preprocess.volume import read_volume

        vol = read_volume(args.synthetic)
    t0 = time.perf_counter()
    with torch.inference_mode():
        p = pred.predict(vol)
    total = time.perf_counter() - t0
    return {"row": args.row, "threads": args.threads, "model": which,
            "shape_xyz": list(vol.array.shape[::-1]), "spacing_xyz_mm": [round(v, 3) for v in vol.spacing[::-1]],
            "model_grid_xyz": list(p.model_grid_shape), "roi": list(pred.config.volume.roi_size),
            "overlap": pred.config.volume.overlap, "seconds": round(total, 2),
            **{f"{k}_s": round(v, 2) for k, v in p.timings.items()},
            "base_rss_mb": round(base), "peak_rss_mb": round(_rss_mb())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[2])
    ap.add_argument("--rows", nargs="+", default=["real", "synthetic"], choices=["real", "synthetic"])
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "ct.json")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--row", help=argparse.SUPPRESS)
    ap.add_argument("--synthetic", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        args.threads = args.threads[0]
        print(json.dumps(child(args)))
        return 0
    from sonoseg.system import available_cpus, cpu_info

    cpu = f"{cpu_info().label()}, {available_cpus()} cores"
    import tempfile

    tmp = tempfile.TemporaryDirectory()
    synthetic = Path(tmp.name) / "synthetic_512x512x300.nii.gz"
    if "synthetic" in args.rows:  # written once, read by each row like any input
        from sonoseg.io import write_nifti

        write_nifti(_synthetic(), synthetic)
    rows = []
    for row in args.rows:
        if row == "real" and not DATA.is_file():
            print(f"skip real: {DATA} not found")
            continue
        for t in args.threads:
            out = subprocess.run([sys.executable, __file__, "--child", "--row", row, "--threads", str(t), "--model", args.model,
                                  "--synthetic", str(synthetic)],
                                 capture_output=True, text=True, env={**__import__("os").environ, "OMP_NUM_THREADS": str(t)})
            if out.returncode != 0:
                print(out.stderr[-2000:])
                return 1
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"sonoseg 3D sliding-window inference; CPU {cpu}")
    cols = [("volume", lambda r: "x".join(map(str, r["shape_xyz"]))), ("model grid", lambda r: "x".join(map(str, r["model_grid_xyz"]))),
            ("threads", lambda r: str(r["threads"])), ("total s", lambda r: f"{r['seconds']:.1f}"),
            ("preprocess s", lambda r: f"{r['preprocess_s']:.1f}"), ("network s", lambda r: f"{r['network_s']:.1f}"),
            ("invert s", lambda r: f"{r['invert_s']:.1f}"), ("peak RSS MB", lambda r: str(r["peak_rss_mb"])),
            ("base RSS MB", lambda r: str(r["base_rss_mb"]))]
    print(" | ".join(c for c, _ in cols))
    for r in rows:
        print(" | ".join(f(r) for _, f in cols))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"cpu": cpu, "rows": rows, "anchor": "TotalSegmentator --fast: 57 s for 512x512x807 "
                                     "on a desktop CPU (issue 13)"}, indent=1))
    print(f"JSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
