#!/usr/bin/env bash
# Rules 2-3 of docs/breast_v4/cv_rule.md (with its addendum), in order, on a finished `cv5` run: package the fold
# models as they would ship (int8 storage), the out-of-fold evaluation of those (rule 2; the fp32 folds too, for the
# record), candidate A7 (the five packaged folds averaged) with its operating point chosen on the out-of-fold rows
# (rule 3), and the ship check of tiers_rule.md on the out-of-fold figures. It stops there: shipping A7 and rule 4
# (the test splits and STU, once) are separate commands, run only after this verdict is written down.
#
#   bash scripts/cv5_a7_steps.sh runs/cv5 runs/a7      # CV run, work folder; DATA=../shared/data by default
source "$(dirname "$0")/_breast_steps_env.sh"
cv=${1:?usage: cv5_a7_steps.sh CV_RUN WORK_DIR}
work=${2:?usage: cv5_a7_steps.sh CV_RUN WORK_DIR}
mkdir -p "$work"

"$py" scripts/package_cv_folds.py "$cv" "$work/cv5_int8"
"${sonoseg[@]}" evaluate "$data/busi" "$data/bus_uclm" --cv "$work/cv5_int8" --backend torch --out "$work/oof_int8"
# For the record only: the fp32 folds, where every fold still has them (folds kept across machines in models/cv5
# are int8-stored; cv_rule.md, addendum of 8 December)
if "$py" - "$cv" <<'EOF'
import sys, torch
from pathlib import Path
stored = [torch.load(p, map_location="cpu", weights_only=False).get("weight_storage")
          for p in sorted(Path(sys.argv[1]).glob("fold-*/best.pt"))]
sys.exit(0 if stored and not any(stored) else 1)
EOF
then
  "${sonoseg[@]}" evaluate "$data/busi" "$data/bus_uclm" --cv "$cv" --backend torch --out "$work/oof_fp32"
else
  echo "fp32 out-of-fold record skipped: some folds of $cv exist only int8-stored"
fi
"${sonoseg[@]}" ensemble "$work"/cv5_int8/fold-*/best.pt --out "$work/A7.pt" --force
"$py" scripts/choose_operating_point.py "$work/A7.pt" "$work/oof_int8" --out "$work/A7op.pt"

# tiers_rule.md rule 3 on the out-of-fold figures: Dice >= v3's val Dice, balanced accuracy >= v3's - 0.02
"$py" - "$work/oof_int8/per_source.json" "$work/ship_check.json" <<'EOF'
import json, sys
bars = {"busi": (0.745, 0.852), "bus_uclm": (0.625, 0.582)}
src = json.load(open(sys.argv[1]))["sources"]
rows = {s: {"dice": src[s]["dice"], "dice_bar": d, "bacc": src[s]["balanced_accuracy"], "bacc_bar": b,
            "passes": src[s]["dice"] >= d and src[s]["balanced_accuracy"] >= b} for s, (d, b) in bars.items()}
verdict = all(r["passes"] for r in rows.values())
for s, r in rows.items():
    print(f"{s}: Dice {r['dice']:.3f} (bar {r['dice_bar']}), balanced accuracy {r['bacc']:.3f} (bar {r['bacc_bar']}): "
          f"{'passes' if r['passes'] else 'FAILS'}")
print("A7 " + ("passes the ship check: it replaces `accurate`" if verdict
               else "fails the ship check: `accurate` unchanged"))
json.dump({"sources": rows, "ships": verdict}, open(sys.argv[2], "w"), indent=1)
EOF
