"""Package a chosen checkpoint as a shipped breast tier (`fast` or `accurate`, issue 22).

Usage:
    python scripts/ship_tier.py CHECKPOINT --tier fast|accurate [--test-eval EVAL_DIR] [--stu-eval EVAL_DIR]
                                [--int8-keep-float PREFIX,PREFIX] [--tta h] [--storage fp16|int8]

Writes src/sonoseg/assets/models/breast_<tier>.pt by ``sonoseg.models.packaging``: weights in fp16 (the
tiers' validation numbers are those of these weights; ``--storage int8`` stores conv/linear weights as int8 with
one scale per output channel, for models evaluated that way, e.g. folds packaged by
``scripts/package_cv_folds.py``), no optimiser/RNG state,
model.version ``breast_<tier> v4`` unless ``--version`` says otherwise, and a config stripped of
machine-local paths (a distillation teacher becomes the shipped accurate tier's path).
``--test-eval``: a multi-source `sonoseg evaluate --split test` folder; its BUSI metrics become the
checkpoint's ``test`` / ``test_class`` (what `sonoseg models` lists) and every source's summary goes to
``test_per_source`` (``--stu-eval`` adds STU's). ``--int8-keep-float``: the ONNX node prefixes every int8
build keeps in fp32 (``bench/int8_keep_float_search.py`` chooses them). ``--tta``: the test-time flips the
tier always applies (``h`` and/or ``v``, comma-separated). Re-shipping a shipped file keeps its weights
byte for byte.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sonoseg.evaluate.aggregate import read_checkpoint_metrics
from sonoseg.models.packaging import ShipOptions, ship_checkpoint

ASSETS = Path("src/sonoseg/assets/models")


def _test_metrics(eval_dir: Path, stu_dir: Path | None) -> dict:
    out = {**read_checkpoint_metrics(eval_dir / "busi"),
           "test_per_source": json.loads((eval_dir / "per_source.json").read_text())["sources"]}
    if stu_dir is not None:
        stu = json.loads((stu_dir / "metrics.json").read_text())
        out["test_per_source"]["stu_hospital"] = {"n_images": stu["dice"]["n"], "dice": stu["dice"]["mean"],
                                                  "dice_ci95": stu["dice"]["ci95"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--tier", choices=("fast", "accurate"), required=True)
    ap.add_argument("--test-eval", type=Path, help="`sonoseg evaluate --split test` output of both sources")
    ap.add_argument("--stu-eval", type=Path, help="`sonoseg evaluate` output on STU (external)")
    ap.add_argument("--int8-keep-float", default="", help="comma-separated ONNX node prefixes kept in fp32")
    ap.add_argument("--version", default=None, help="model.version to record (default: breast_TIER v4)")
    ap.add_argument("--tta", default=None, help="test-time flips recorded in the file, comma-separated (e.g. h)")
    ap.add_argument("--storage", choices=("fp16", "int8"), default="fp16",
                    help="weight storage: fp16, or int8 with one scale per output channel (a quarter of fp32)")
    ap.add_argument("--out", type=Path, help="where to write (default: src/sonoseg/assets/models/breast_TIER.pt)")
    a = ap.parse_args()
    opts = ShipOptions(version=a.version or f"breast_{a.tier} v4", storage=a.storage,
                       teacher=str(ASSETS / "breast_accurate.pt"),
                       keep_float=[p for p in a.int8_keep_float.split(",") if p],
                       tta=None if a.tta is None else [t for t in a.tta.split(",") if t])
    dst = ship_checkpoint(a.checkpoint, a.out or ASSETS / f"breast_{a.tier}.pt", opts,
                          metrics=_test_metrics(a.test_eval, a.stu_eval) if a.test_eval else None)
    print(f"{dst}: {dst.stat().st_size / 1e6:.1f} MB, version {opts.version}")


if __name__ == "__main__":
    main()
