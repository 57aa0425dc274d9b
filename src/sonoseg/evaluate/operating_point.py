"""Choose the decision policy of a model on validation images: find the lesion first, then flag malignancy.

Two choices, each by a rule fixed before it is applied (docs/breast_v4/v4_rule.md):

1. **Lesion rule** (:class:`sonoseg.infer.decision.DecisionPolicy`): among the arg-max rule, the mask
   alone, and the head's P(no lesion) >= t (alone, or never overruling a segmented region) with t on a
   0.05 grid, the rules that miss <= ``max_missed`` of the lesion images of *every* source qualify; of
   those the one that calls the most normal images "no lesion" (pooled) wins, ties going to the simpler
   rule, then to the higher threshold (the one further from missing a lesion). When none qualifies, the one with the smallest worst-source miss rate is taken, and said so.
2. **Suspicious flag**: the largest threshold on P(malignant) (0.01 grid) at which the pooled
   malignant images reach ``min_sensitivity`` (found by the lesion rule and at or above the threshold).

:func:`more_cautious` combines two policies (say, a student's own and its teacher's) into the one that misses
no lesion either would find and flags every malignancy either would flag.

Inputs are per-image rows: ``source``, ``true_class``, ``probs`` (name -> p), ``mask_empty``.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from sonoseg.infer.decision import DecisionPolicy, decide

RULE_ORDER = {"argmax": 0, "mask": 1, "threshold": 2, "mask_or_threshold": 3}  # simpler first on ties


def candidates(grid_step: float = 0.05) -> list[DecisionPolicy]:
    grid = [float(round(t, 4)) for t in np.arange(grid_step, 1.0, grid_step)]  # plain floats: they go into checkpoints
    out = [DecisionPolicy("argmax"), DecisionPolicy("mask")]
    out += [DecisionPolicy(rule, t) for rule in ("threshold", "mask_or_threshold") for t in grid]
    return out


def _found(rows: Sequence[dict], names: list[str], no_lesion: str, policy: DecisionPolicy) -> np.ndarray:
    return np.array([decide(0 if r["mask_empty"] else 1, np.array([r["probs"][n] for n in names]), names, no_lesion,
                            policy)["lesion_found"] for r in rows], dtype=bool)


def _rates(rows: Sequence[dict], found: np.ndarray, no_lesion: str) -> dict:
    lesion = np.array([r["true_class"] != no_lesion for r in rows])
    normal = ~lesion
    return {"n_lesion": int(lesion.sum()), "n_normal": int(normal.sum()),
            "missed": float((~found[lesion]).mean()) if lesion.any() else math.nan,
            "normals_no_lesion": float((~found[normal]).mean()) if normal.any() else math.nan,
            "n_normals_no_lesion": int((~found[normal]).sum())}


def choose_lesion_rule(rows: Sequence[dict], names: list[str], no_lesion: str, max_missed: float = 0.02) -> dict:
    """The rule table and the chosen policy (see the module docstring)."""
    sources = sorted({r["source"] for r in rows})
    table = []
    for pol in candidates():
        found = _found(rows, names, no_lesion, pol)
        per = {s: _rates([r for r in rows if r["source"] == s], found[[r["source"] == s for r in rows]], no_lesion)
               for s in sources}
        worst = max((v["missed"] for v in per.values() if not math.isnan(v["missed"])), default=math.nan)
        table.append({"rule": pol.lesion_rule, "threshold": pol.no_lesion_threshold, "per_source": per,
                      "worst_missed": worst, "normals_no_lesion": sum(v["n_normals_no_lesion"] for v in per.values()),
                      "qualifies": bool(worst <= max_missed + 1e-12)})
    ok = [row for row in table if row["qualifies"]]
    if ok:
        best = max(ok, key=lambda r: (r["normals_no_lesion"], -RULE_ORDER[r["rule"]], r["threshold"] or 0))
        why = f"misses <= {max_missed:.0%} of lesions on every source; most normals called 'no lesion' among those"
    else:
        best = min(table, key=lambda r: (r["worst_missed"], -r["normals_no_lesion"]))
        why = f"no rule misses <= {max_missed:.0%} on every source: the smallest worst-source miss rate"
    return {"table": table, "chosen": {"lesion_rule": best["rule"], "no_lesion_threshold": best["threshold"]},
            "chosen_row": best, "why": why, "max_missed": max_missed}


def choose_suspicious(rows: Sequence[dict], names: list[str], no_lesion: str, policy: DecisionPolicy,
                      cls: str = "malignant", min_sensitivity: float = 0.90) -> dict:
    """The largest P(cls) threshold giving ``min_sensitivity`` on the pooled rows, with per-source figures."""
    found = _found(rows, names, no_lesion, policy)
    p = np.array([r["probs"][cls] for r in rows])
    pos = np.array([r["true_class"] == cls for r in rows])
    if not pos.any():
        return {"class": cls, "threshold": None, "why": f"no {cls} image to choose on"}
    chosen: Optional[float] = None
    for t in np.round(np.arange(0.99, 0.0, -0.01), 2):
        flagged = found & (p >= t)
        if flagged[pos].mean() >= min_sensitivity - 1e-12:
            chosen = float(t)
            break
    if chosen is None:
        return {"class": cls, "threshold": None, "why": f"no threshold reaches sensitivity {min_sensitivity:.2f}"}
    per = {s: _flag_rates([r for r in rows if r["source"] == s], found[[r["source"] == s for r in rows]], no_lesion,
                          cls, chosen)
           for s in sorted({r["source"] for r in rows})}
    return {"class": cls, "threshold": chosen, "min_sensitivity": min_sensitivity,
            "pooled_sensitivity": float((found & (p >= chosen))[pos].mean()), "per_source": per}


def _flag_rates(rows: Sequence[dict], found: np.ndarray, no_lesion: str, cls: str, threshold: float) -> dict:
    """What a suspicious flag at ``threshold`` does on ``rows`` (one source): ``cls`` images flagged
    (sensitivity), the others not (specificity), and the lesion images of other classes not (benign specificity)."""
    flagged = found & (np.array([r["probs"][cls] for r in rows]) >= threshold)
    pos = np.array([r["true_class"] == cls for r in rows], dtype=bool)
    benign = np.array([r["true_class"] not in (cls, no_lesion) for r in rows], dtype=bool)

    def share(sel: np.ndarray, value: bool) -> float:
        return float((flagged[sel] == value).mean()) if sel.any() else math.nan

    return {"n_malignant": int(pos.sum()), "sensitivity": share(pos, True), "specificity": share(~pos, False),
            "specificity_benign": share(benign, False)}


def more_cautious(a: DecisionPolicy, b: DecisionPolicy) -> DecisionPolicy:
    """The policy that says "no lesion" only where both ``a`` and ``b`` do, and flags malignancy wherever either
    does (the lower suspicious threshold). For a student whose own validation figures are flattered and whose
    teacher's honest policy was chosen on other probabilities (docs/breast_v4/a7_student_rule.md): a missed
    lesion costs more than a false alarm. "No lesion" under each rule: ``mask`` when the mask is empty,
    ``threshold`` when P(no lesion) >= t, ``mask_or_threshold`` when both, ``argmax`` when the no-lesion class
    is the arg-max (implied by P >= t for t >= 0.5). Raises ValueError where the intersection is no rule of
    :data:`~sonoseg.infer.decision.LESION_RULES`, or the suspicious classes differ."""
    def parts(p: DecisionPolicy):  # (needs an empty mask, needs P(no lesion) >= this, needs the arg-max)
        needs_empty = p.lesion_rule in ("mask", "mask_or_threshold")
        if p.lesion_rule == "mask":
            return True, None, False
        if p.lesion_rule == "argmax" or p.no_lesion_threshold is None:  # as head_finds_lesion reads it
            return needs_empty, None, True
        return needs_empty, p.no_lesion_threshold, False

    (ea, ta, xa), (eb, tb, xb) = parts(a), parts(b)
    empty, argmax = ea or eb, xa or xb
    t = max((v for v in (ta, tb) if v is not None), default=None)
    if argmax and t is not None and t >= 0.5:
        argmax = False  # P(no lesion) >= t >= 0.5 makes the no-lesion class the arg-max
    if argmax and (empty or t is not None):
        raise ValueError(f"no single lesion rule is as cautious as both {a.lesion_rule!r} and {b.lesion_rule!r} "
                         f"(thresholds {ta}, {tb})")
    rule = "argmax" if argmax else {(True, True): "mask_or_threshold", (True, False): "mask",
                                    (False, True): "threshold"}[(empty, t is not None)]
    flags = [(p.suspicious_class, p.suspicious_threshold) for p in (a, b) if p.suspicious_threshold is not None]
    if len({c for c, _ in flags}) > 1:
        raise ValueError(f"suspicious classes differ: {a.suspicious_class!r} and {b.suspicious_class!r}")
    cls, thr = (flags[0][0], min(v for _, v in flags)) if flags else (None, None)
    return DecisionPolicy(rule, t if rule != "argmax" else None, cls, thr)


def policy_rates(rows: Sequence[dict], names: list[str], no_lesion: str, policy: DecisionPolicy) -> dict:
    """Per source, what ``policy`` does on ``rows`` (chosen elsewhere, applied unchanged): missed lesions, normals
    called "no lesion", and with a suspicious flag the malignant images flagged (sensitivity) and the others not
    (specificity; on benign images alone too)."""
    found = _found(rows, names, no_lesion, policy)
    out = {}
    for s in sorted({r["source"] for r in rows}):
        m = np.array([r["source"] == s for r in rows])
        sub = [r for r, keep in zip(rows, m) if keep]
        res = _rates(sub, found[m], no_lesion)
        if policy.suspicious_class and policy.suspicious_threshold is not None:
            res.update(_flag_rates(sub, found[m], no_lesion, policy.suspicious_class, policy.suspicious_threshold))
        out[s] = res
    return out
