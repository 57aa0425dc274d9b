#!/usr/bin/env bash
# docs/breast_v4/a7_student_rule.md, rules 1-4, in order, once A7 is the shipped `accurate` tier: the run, its
# last epoch packaged as `fast` ships it, its fp32 layers chosen on training frames, the three ship checks on val
# and speed, and the operating point no less cautious than A7's. It stops at the verdict: shipping the student
# and rule 5 (the test splits and STU, once) are separate commands, run only after the verdict is written down.
#
#   bash scripts/a7_student_steps.sh runs runs/fast_a7_work    # runs folder, work folder; DATA=../shared/data
source "$(dirname "$0")/_breast_steps_env.sh"
runs=${1:?usage: a7_student_steps.sh RUNS_DIR WORK_DIR}
work=${2:?usage: a7_student_steps.sh RUNS_DIR WORK_DIR}
mkdir -p "$work"

# the run (the config's teacher is the shipped accurate tier: A7 by now)
[ -f "$runs/fast_a7/summary.json" ] || "${sonoseg[@]}" train "$data/busi" "$data/bus_uclm" \
  "${split_files[@]}" -c configs/breast_fast128.yaml --init "$models/breast_fast.pt" --out "$runs" --name fast_a7 \
  --no-progress

# rule 1: the last epoch, stored as ship_tier.py stores `fast`; rule 2: its fp32 layers, chosen on training frames
"$py" scripts/ship_tier.py "$runs/fast_a7/last.pt" --tier fast --version "breast_fast v6" --out "$work/cand0.pt"
"$py" bench/int8_keep_float_search.py "$work/cand0.pt" --start "$("$py" - <<'EOF'
import torch
print(",".join(torch.load("src/sonoseg/assets/models/breast_fast.pt", map_location="cpu",
                          weights_only=False)["config"]["model"].get("int8_keep_float") or []))
EOF
)" "${sources[@]}" --out "$work/search"
keep=$("$py" -c "import json,sys; print(','.join(json.load(open(sys.argv[1]))['chosen']))" \
  "$work/search/int8_keep_float_search.json")
"$py" scripts/ship_tier.py "$work/cand0.pt" --tier fast --version "breast_fast v6" --int8-keep-float "$keep" \
  --out "$work/candidate.pt"

# rule 3 (a) the export gate on val frames of both sources, (b) int8 val Dice, (c) speed
gate=pass
"${sonoseg[@]}" export --model "$work/candidate.pt" "${sources[@]}" --out "$work/export" || gate=FAIL
"${sonoseg[@]}" evaluate "$data/busi" "$data/bus_uclm" --model "$work/candidate.pt" --backend onnx-int8 --split val \
  "${split_files[@]}" --out "$work/val_int8"
"$py" bench/e2e_compare.py "fast=$models/breast_fast.pt" "fast_a7=$work/candidate.pt" --repeat 5 --rounds 5 \
  --out "$work/speed"

# rule 4: the operating point, no less cautious than A7's
"$py" scripts/choose_operating_point.py "$work/candidate.pt" "$work/val_int8" --out "$work/candidate_op.pt" \
  --no-less-cautious-than "$models/breast_accurate.pt"

"$py" - "$gate" "$work/val_int8/per_source.json" "$work/speed/e2e_compare.json" "$work/verdict.json" <<'EOF'
import json, sys
gate, per_source, speed, out = sys.argv[1:5]
bars = {"busi": max(0.745, 0.750), "bus_uclm": max(0.694, 0.718)}  # fast128_rule.md's bar, the shipped fast's own
src = json.load(open(per_source))["sources"]
dice = {s: {"dice": src[s]["dice"], "bar": b, "passes": src[s]["dice"] >= b} for s, b in bars.items()}
fps = json.load(open(speed))["summary"]["fast_a7"]["median_fps"]
checks = {"a_export_gate": gate == "pass", "b_val_dice": all(d["passes"] for d in dice.values()), "c_speed": fps >= 100}
for s, d in dice.items():
    print(f"{s}: int8 val Dice {d['dice']:.3f} (bar {d['bar']:.3f}): {'passes' if d['passes'] else 'FAILS'}")
print(f"export gate: {gate}; median end-to-end {fps:.0f} frames/s (bar 100)")
print("the student " + ("passes every check: it becomes `fast`" if all(checks.values()) else "fails: `fast` unchanged"))
json.dump({"checks": checks, "dice": dice, "median_fps": fps, "ships": all(checks.values())}, open(out, "w"), indent=1)
EOF
