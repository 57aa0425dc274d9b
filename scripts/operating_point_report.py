"""Measure a model's stored operating point (lesion rule, suspicious flag) on an evaluation, without choosing.

Usage:
    sonoseg evaluate ../shared/data/busi ../shared/data/bus_uclm --model M.pt \
        --split-file configs/busi_split.csv --split-file configs/bus_uclm_split.csv --split test --out eval-test
    python scripts/operating_point_report.py M.pt eval-test

The thresholds were chosen on validation (scripts/choose_operating_point.py); this applies them unchanged
to another split and prints, per source, missed lesions, normals called "no lesion", and malignant
sensitivity / specificity of the suspicious flag. Writes EVAL_DIR/operating_point_applied.json.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from sonoseg.evaluate.operating_point import policy_rates
from sonoseg.infer.decision import DecisionPolicy
from sonoseg.models.checkpoint import checkpoint_config, load_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))
from choose_operating_point import read_rows  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("eval_dir", type=Path)
    a = ap.parse_args(argv)
    cfg = checkpoint_config(load_checkpoint(a.model))
    head = cfg.model.classification
    policy = DecisionPolicy.from_head(head)
    rows, names = read_rows(a.eval_dir)
    res = policy_rates(rows, names, head.no_lesion_class, policy)
    print(f"policy: {policy}")
    print("| source | missed lesions | normals called no lesion | malignant sensitivity | specificity |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for s, v in res.items():
        f = lambda x: "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1%}"  # noqa: E731
        print(f"| {s} | {f(v['missed'])} | {f(v['normals_no_lesion'])} | {f(v.get('sensitivity'))} | {f(v.get('specificity'))} |")
    (a.eval_dir / "operating_point_applied.json").write_text(json.dumps(
        {"policy": policy.__dict__, "per_source": res}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
