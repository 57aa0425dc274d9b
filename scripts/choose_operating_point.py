"""Choose a model's lesion rule and "suspicious" threshold on validation images; store them in a copy.

Usage:
    sonoseg evaluate ../shared/data/busi ../shared/data/bus_uclm --model M.pt \
        --split-file configs/busi_split.csv --split-file configs/bus_uclm_split.csv --split val --out eval-val
    python scripts/choose_operating_point.py M.pt eval-val --out M-policy.pt

Reads, for every source folder under EVAL_DIR, the class probabilities (per_image_class.csv) and whether
the mask was empty (per_image.csv) that `sonoseg evaluate` wrote, applies the rules of
sonoseg.evaluate.operating_point (missed lesions <= --max-missed on every source; suspicious threshold
for malignant sensitivity >= --min-sensitivity), writes EVAL_DIR/operating_point.json/.md, and writes
``--out``: the same checkpoint (weights byte for byte) with ``model.classification.lesion_rule``,
``no_lesion_threshold``, ``suspicious_class`` and ``suspicious_threshold`` set. Validation split only.
``--no-less-cautious-than CKPT`` stores, per threshold, the more cautious of this choice and CKPT's stored
policy (``sonoseg.evaluate.operating_point.more_cautious``), with its figures on the same images.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import sys
from pathlib import Path

import torch

from sonoseg.evaluate.aggregate import jsonable
from sonoseg.evaluate.operating_point import choose_lesion_rule, choose_suspicious, more_cautious, policy_rates
from sonoseg.infer.decision import DecisionPolicy


def read_rows(eval_dir: Path) -> tuple[list[dict], list[str]]:
    folders = [d for d in sorted(eval_dir.iterdir()) if (d / "per_image_class.csv").is_file()] \
        if not (eval_dir / "per_image_class.csv").is_file() else [eval_dir]
    if not folders:
        raise SystemExit(f"error: {eval_dir}: no per_image_class.csv (run `sonoseg evaluate` with a class-head model)")
    rows, names = [], None
    for d in folders:
        empty = {r["stem"]: r["pred_empty"] in ("True", "true", "1") for r in csv.DictReader(open(d / "per_image.csv"))}
        for r in csv.DictReader(open(d / "per_image_class.csv")):
            names = names or [k[2:] for k in r if k.startswith("p_")]
            # a tentative outline exists because of the stored policy being replaced here: its mask counts as empty
            tentative = r.get("tentative_outline") in ("True", "true", "1")
            rows.append({"source": d.name, "true_class": r["true_class"], "mask_empty": empty[r["stem"]] or tentative,
                         "probs": {n: float(r[f"p_{n}"]) for n in names}})
    return rows, names


def _pct(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1%}"


def report_md(lesion: dict, susp: dict) -> str:
    c = lesion["chosen_row"]
    lines = ["### Operating point chosen on validation", "",
             f"Lesion rule: **{c['rule']}**" + (f", P(no lesion) >= {c['threshold']:.2f} to call no lesion"
                                               if c["threshold"] is not None else "") + f" ({lesion['why']}).", "",
             "| source | lesion images | missed | normals | normals called no lesion |", "| --- | ---: | ---: | ---: | ---: |"]
    for s, v in c["per_source"].items():
        lines.append(f"| {s} | {v['n_lesion']} | {_pct(v['missed'])} | {v['n_normal']} | {_pct(v['normals_no_lesion'])} |")
    argmax = next(r for r in lesion["table"] if r["rule"] == "argmax")
    lines += ["", "Arg-max rule for comparison: " + ", ".join(
        f"{s} missed {_pct(v['missed'])}, normals {_pct(v['normals_no_lesion'])}" for s, v in argmax["per_source"].items())]
    if susp.get("threshold") is None:
        lines += ["", f"Suspicious flag: none ({susp.get('why')})."]
    else:
        lines += ["", f"Suspicious flag: P({susp['class']}) >= **{susp['threshold']:.2f}** (pooled sensitivity "
                      f"{susp['pooled_sensitivity']:.1%}).", "",
                  "| source | malignant images | sensitivity | specificity (all non-malignant) | specificity (benign) |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        for s, v in susp["per_source"].items():
            lines.append(f"| {s} | {v['n_malignant']} | {_pct(v['sensitivity'])} | {_pct(v['specificity'])} | "
                         f"{_pct(v['specificity_benign'])} |")
    return "\n".join(lines) + "\n"


def _policy_text(p: DecisionPolicy) -> str:
    text = p.lesion_rule + (f", no lesion at P >= {p.no_lesion_threshold:.2f}"
                            if p.no_lesion_threshold is not None else "")
    return text + (f", suspicious at P({p.suspicious_class}) >= {p.suspicious_threshold:.2f}"
                   if p.suspicious_threshold is not None else ", no suspicious flag")


def cautious_md(other_name: str, theirs: DecisionPolicy, stored: DecisionPolicy, rates: dict) -> str:
    lines = ["", f"Stored policy, no less cautious than {other_name}'s ({_policy_text(theirs)}): "
                 f"**{_policy_text(stored)}**, on these images:", "",
             "| source | missed | normals called no lesion | malignant flagged |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {s} | {_pct(v['missed'])} | {_pct(v['normals_no_lesion'])} | {_pct(v.get('sensitivity'))} |"
              for s, v in rates.items()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("eval_dir", type=Path, help="output folder of `sonoseg evaluate ... --split val`")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--max-missed", type=float, default=0.02)
    ap.add_argument("--min-sensitivity", type=float, default=0.90)
    ap.add_argument("--suspicious-class", default="malignant")
    ap.add_argument("--no-less-cautious-than", type=Path, default=None, metavar="CKPT",
                    help="store, per threshold, the more cautious of the policy chosen here and CKPT's stored one "
                         "(higher no-lesion threshold, lower suspicious threshold; docs/breast_v4/a7_student_rule.md)")
    a = ap.parse_args(argv)
    payload = torch.load(a.model, map_location="cpu", weights_only=False)
    cc = payload["config"]["model"].get("classification")
    if not cc or not cc.get("no_lesion_class"):
        raise SystemExit(f"error: {a.model}: the model has no class head with a no-lesion class")
    rows, names = read_rows(a.eval_dir)
    if list(cc.get("names") or names) != names:
        raise SystemExit(f"error: {a.eval_dir}: classes {names} are not the model's {cc.get('names')}")
    lesion = choose_lesion_rule(rows, names, cc["no_lesion_class"], a.max_missed)
    policy = DecisionPolicy(lesion["chosen"]["lesion_rule"], lesion["chosen"]["no_lesion_threshold"])
    susp = choose_suspicious(rows, names, cc["no_lesion_class"], policy, a.suspicious_class, a.min_sensitivity)
    md = report_md(lesion, susp)
    if susp.get("threshold") is not None:
        policy = DecisionPolicy(policy.lesion_rule, policy.no_lesion_threshold, a.suspicious_class, susp["threshold"])
    if a.no_less_cautious_than is not None:
        other = torch.load(a.no_less_cautious_than, map_location="cpu", weights_only=False)["config"]["model"]
        oc = other.get("classification") or {}
        theirs = DecisionPolicy(oc.get("lesion_rule", "argmax"), oc.get("no_lesion_threshold"),
                                oc.get("suspicious_class"), oc.get("suspicious_threshold"))
        try:
            policy = more_cautious(policy, theirs)
        except ValueError as exc:
            raise SystemExit(f"error: {a.no_less_cautious_than}: {exc}")
        md += cautious_md(a.no_less_cautious_than.name, theirs, policy,
                          policy_rates(rows, names, cc["no_lesion_class"], policy))
    (a.eval_dir / "operating_point.md").write_text(md)
    (a.eval_dir / "operating_point.json").write_text(json.dumps(jsonable(
        {"lesion": lesion, "suspicious": susp, "stored": dataclasses.asdict(policy)}), indent=1))
    print(md)
    cc.update(lesion_rule=policy.lesion_rule, no_lesion_threshold=policy.no_lesion_threshold,
              suspicious_class=policy.suspicious_class, suspicious_threshold=policy.suspicious_threshold)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, a.out)
    print(f"wrote {a.out}, {a.eval_dir / 'operating_point.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
