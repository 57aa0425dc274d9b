#!/usr/bin/env python
"""Which layers a network must keep in fp32 for its int8 masks to agree with fp32: a greedy search on
TRAINING frames, so the validation split stays free to judge the result.

The int8 model is built exactly as ``sonoseg export --dataset ...`` builds it (same 32 calibration
images per source, seeded, from the training split); it is compared with the fp32 ONNX model on other
training frames with a lesion (disjoint from the calibration images), per-image mask Dice as in the
export gate. Starting from ``--start`` (default: the checkpoint's own ``model.int8_keep_float``), each
step tries every remaining layer group (stem, each encoder stage, each FPN level, each segmentation
block, the heads) in fp32 and keeps the one that raises the worst frame's agreement most (ties: the 5th
percentile, then the mean). It stops when the worst frame reaches ``--target-worst`` and the mean
``--target-mean``, when no group helps, or after ``--steps`` steps. Prints every tried set and writes
JSON (chosen prefixes, per-step figures, int8 network latency of the start and the chosen set).

    .venv/bin/python bench/int8_keep_float_search.py CKPT \\
        --dataset ../shared/data/busi --split-file configs/busi_split.csv \\
        --dataset ../shared/data/bus_uclm --split-file configs/bus_uclm_split.csv --out /tmp/kf
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from int8_agreement import latency_ms  # bench/ is on sys.path when this runs as a script

CALIB_PER_RUN = 64  # sonoseg export's default --calibration-images, split evenly over the sources


def layer_groups(names: list[str]) -> dict[str, str]:
    """Group label -> node-name prefix for every Conv/Gemm of an smp FPN/U-Net graph, coarse enough
    that a search over them is minutes, fine enough to find one sensitive stage."""
    groups: dict[str, str] = {}
    for n in names:
        parts = n.strip("/").split("/")
        if len(parts) < 3:
            continue
        if parts[1] == "encoder":
            key = "/".join(parts[:3])  # model/encoder/conv_stem | model/encoder/blocks.K
        elif parts[1] == "decoder":
            key = "/".join(parts[:3])  # model/decoder/pK | model/decoder/seg_blocks.K
        else:
            key = "/".join(parts[:2])  # model/segmentation_head | model/classification_head
        groups.setdefault(key.split("/", 1)[1], "/" + key + "/")
    return groups


def _split_frames(dataset: Path, split_file: Path, cfg, n_calib: int, n_check: int, seed: int):
    """(calibration grids, lesion check grids) of one source's training split: the calibration images are
    the exporter's own pick (``split_grids`` with ``n``), the check frames other lesion images."""
    from sonoseg.export import split_grids, subset_indices

    pairs = split_grids(dataset, split_file, cfg.data.train_split, cfg)  # preprocessed once
    picked = set(subset_indices(len(pairs), n_calib))
    calib = [g for i, (g, _) in enumerate(pairs) if i in picked]
    taken = {g.tobytes() for g in calib}  # a duplicate of a calibration image is no independent check either
    rest = [g for g, m in pairs if np.asarray(m).any() and g.tobytes() not in taken]
    if n_check < len(rest):
        keep = np.sort(np.random.default_rng(seed).choice(len(rest), size=n_check, replace=False))
        rest = [rest[i] for i in keep]
    return calib, rest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--dataset", type=Path, action="append", required=True)
    ap.add_argument("--split-file", type=Path, action="append", required=True)
    ap.add_argument("--check-per-source", type=int, default=150, help="training lesion frames checked per source")
    ap.add_argument("--start", default=None, help="comma-separated prefixes to start from (default: the checkpoint's)")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--target-worst", type=float, default=0.90)
    ap.add_argument("--target-mean", type=float, default=0.98)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    if len(a.dataset) != len(a.split_file):
        ap.error("give one --split-file per --dataset")

    import onnx

    from sonoseg.export import per_image_agreement, predict_masks
    from sonoseg.runtime.agreement import predict_class_probs
    from sonoseg.runtime.backends import create_backend, load_torch_model
    from sonoseg.runtime.onnx_export import export_onnx
    from sonoseg.runtime.quantize import default_scheme, quantize_static_int8
    from sonoseg.system import cpu_info

    model, cfg = load_torch_model(a.checkpoint)
    calib, check = [], []
    for k, (ds, sf) in enumerate(zip(a.dataset, a.split_file)):
        c, v = _split_frames(ds, sf, cfg, max(1, CALIB_PER_RUN // len(a.dataset)), a.check_per_source, seed=10 + k)
        calib += c
        check += v
    start = list(cfg.model.int8_keep_float) if a.start is None else [p for p in a.start.split(",") if p]
    print(f"{a.checkpoint.name}: {len(calib)} calibration and {len(check)} check frames (training split, lesion "
          f"frames only for checking); scheme {default_scheme()}; {cpu_info().label()}", flush=True)
    a.out.mkdir(parents=True, exist_ok=True)
    x1 = np.ascontiguousarray(np.asarray(check[0], np.float32)[None, None])
    with tempfile.TemporaryDirectory() as td:
        fp32 = Path(td) / "fp32.onnx"
        export_onnx(model, fp32, config=cfg)
        names = [n.name for n in onnx.load(str(fp32)).graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
        groups = layer_groups(names)
        ref_be = create_backend("onnx", fp32, threads=a.threads)
        ref = predict_masks(ref_be.run, check)
        ref_cls = predict_class_probs(ref_be.run_all, check, cfg.model.in_channels) if hasattr(ref_be, "run_all") else None

        def trial(prefixes: list[str], tag: str) -> dict:
            q = Path(td) / f"{tag}.onnx"
            quantize_static_int8(fp32, q, calib, keep_float=prefixes)
            be = create_backend("onnx", q, threads=a.threads)
            per = per_image_agreement(ref, predict_masks(be.run, check))
            row = {"keep_float": prefixes, "mean": float(per.mean()), "p5": float(np.percentile(per, 5)),
                   "worst": float(per.min()), "below_0.9": int((per < 0.9).sum())}
            if ref_cls is not None:
                cls = predict_class_probs(be.run_all, check, cfg.model.in_channels)
                row["same_class"] = float((cls.argmax(1) == ref_cls.argmax(1)).mean())
            q.unlink()
            return row

        def key(r: dict) -> tuple:
            return (round(r["worst"], 4), round(r["p5"], 4), round(r["mean"], 4))

        t0 = time.perf_counter()
        current = trial(start, "start")
        history = [{"step": 0, "added": None, **current}]
        print(f"step 0 start {start}: mean {current['mean']:.4f} p5 {current['p5']:.4f} worst {current['worst']:.4f} "
              f"frames<0.9 {current['below_0.9']}", flush=True)
        for step in range(1, a.steps + 1):
            if current["worst"] >= a.target_worst and current["mean"] >= a.target_mean:
                break
            tried = []
            for label, prefix in groups.items():
                if any(prefix.startswith(p) or p.startswith(prefix) for p in current["keep_float"]):
                    continue
                r = trial([*current["keep_float"], prefix], f"s{step}")
                r["added"] = label
                tried.append(r)
                print(f"  step {step} + {label:<28} mean {r['mean']:.4f} p5 {r['p5']:.4f} worst {r['worst']:.4f} "
                      f"frames<0.9 {r['below_0.9']:3d}" + (f" same class {r['same_class']:.3f}" if "same_class" in r else ""),
                      flush=True)
            best = max(tried, key=key) if tried else None
            if best is None or key(best) <= key(current):
                print(f"step {step}: no group helps; stop", flush=True)
                break
            current = best
            history.append({"step": step, **best, "tried": tried})
            print(f"step {step}: keep {best['added']} -> worst {best['worst']:.4f}", flush=True)
        chosen = current["keep_float"]
        lat = {}
        for tag, pre in (("all_int8", []), ("start", start), ("chosen", chosen)):
            q = Path(td) / f"lat_{tag}.onnx"
            quantize_static_int8(fp32, q, calib, keep_float=pre)
            lat[tag] = latency_ms(q, x1, a.threads)
        lat["fp32"] = latency_ms(fp32, x1, a.threads)
    print(f"chosen: {chosen}  ({time.perf_counter() - t0:.0f} s)")
    print("int8 network ms (batch 1, median of 40): " + ", ".join(f"{k} {v:.2f}" for k, v in lat.items()))
    out = a.out / "int8_keep_float_search.json"
    out.write_text(json.dumps({"checkpoint": str(a.checkpoint), "cpu": cpu_info().summary(), "scheme": default_scheme(),
                               "n_calibration": len(calib), "n_check": len(check), "split": cfg.data.train_split,
                               "start": start, "chosen": chosen, "final": {k: v for k, v in current.items() if k != "tried"},
                               "history": history, "latency_ms": lat, "threads": a.threads}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
