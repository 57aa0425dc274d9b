"""Whether an image shows a lesion: the class head and the mask, combined by one readable rule.

The class head sees the whole image and was trained on image-level labels with balanced class weights;
the mask head says where. They can disagree (a few stray pixels on a normal image, or a lesion class
with nothing segmented), so ``predict`` reports both and resolves them like this:

==============================  ==================  =============================================
class head says                 mask                result
==============================  ==================  =============================================
no-lesion class (e.g. normal)   empty               no lesion found (source "both")
no-lesion class                 non-empty           no lesion found (source "class head"); the
                                                    region is kept in the files but flagged as
                                                    not a finding (``region_is_finding: false``)
a lesion class                  non-empty           lesion found, class = head's class ("both")
a lesion class                  empty               lesion suspected, not localised (source
                                                    "class head"); review the image
==============================  ==================  =============================================

So "no lesion found" always comes from the class head when the model has one; the mask is used for
where, and ``agreement`` says whether the two heads agree. Without a class head (or without a
no-lesion class) the mask alone decides: nothing found iff it is empty (source "mask").

Words: every decision has ``found`` and ``structure`` (what the model segments, from
:mod:`sonoseg.infer.structures`: "fetal head", "lesion", "structure"), and a short ``verdict`` /
``note`` in those words ("fetal head segmented", "no fetal head found"); ``lesion_found`` is there only
when the model says lesion, so a fetal-head model's outputs never speak of lesions.

A model may carry a :class:`DecisionPolicy` chosen on validation images (issue 22: a missed lesion
costs more than a false alarm), stored in ``model.classification``:

- ``lesion_rule: mask``: the mask alone says whether there is a lesion (the head only names its class);
- ``lesion_rule: threshold``: the head says "no lesion" only when P(no-lesion class) >= ``no_lesion_threshold``
  (instead of the arg-max); the class shown is then the most likely lesion class;
- ``lesion_rule: mask_or_threshold``: as ``threshold``, and a segmented region is always a finding (a
  non-empty mask is never overruled by the head);
- ``suspicious_class`` / ``suspicious_threshold``: a found lesion with P(that class) >= the threshold is
  flagged ``suspicious`` (the malignancy operating point, chosen for sensitivity, not the arg-max).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

LESION_RULES = ("argmax", "mask", "threshold", "mask_or_threshold")


@dataclass(frozen=True)
class DecisionPolicy:
    """How the heads are combined (see the module docstring); the default is the arg-max rule."""

    lesion_rule: str = "argmax"
    no_lesion_threshold: Optional[float] = None
    suspicious_class: Optional[str] = None
    suspicious_threshold: Optional[float] = None

    @classmethod
    def from_head(cls, head) -> "DecisionPolicy":
        """From a ``ClassificationConfig`` (None -> the default policy)."""
        if head is None:
            return cls()
        return cls(head.lesion_rule, head.no_lesion_threshold, head.suspicious_class, head.suspicious_threshold)


def head_finds_lesion(probs: Sequence[float], names: Sequence[str], no_lesion: str, policy: DecisionPolicy) -> bool:
    """Whether the class head alone, by ``policy``, says the image shows a lesion."""
    probs = [float(p) for p in probs]
    if policy.lesion_rule == "argmax" or policy.no_lesion_threshold is None:
        return names[int(np.argmax(probs))] != no_lesion
    return probs[list(names).index(no_lesion)] < policy.no_lesion_threshold


def decide(mask_pixels: int, class_probs: Optional[np.ndarray], class_names: Sequence[str],
           no_lesion_class: Optional[str], policy: Optional[DecisionPolicy] = None, structure: str = "lesion") -> dict:
    """The decision for one image (or one cine, with the largest frame's mask). JSON-ready dict:
    ``found``, ``structure``, ``lesion_found`` (lesion models only), ``source``, ``agreement``, ``class``,
    ``class_probabilities``, ``region_is_finding``, ``verdict``, ``note``, and with a suspicious threshold
    ``suspicious``."""
    policy = policy or DecisionPolicy()
    mask_lesion = int(mask_pixels) > 0
    out: dict = {"class": None, "class_probabilities": None}
    probs: list[float] = []
    if class_probs is not None and len(class_names):
        probs = [float(p) for p in np.asarray(class_probs, float)]
        cls = class_names[int(np.argmax(probs))]
        out["class"] = cls
        out["class_probabilities"] = {n: round(p, 4) for n, p in zip(class_names, probs)}
    if out["class"] is None or no_lesion_class is None or no_lesion_class not in class_names:
        out.update(found=mask_lesion, structure=structure, source="mask", agreement=True, region_is_finding=mask_lesion,
                   verdict=f"{structure} found" if mask_lesion else f"no {structure} found",
                   note=f"{structure} segmented" if mask_lesion else f"no {structure} found")
        if structure == "lesion":
            out["lesion_found"] = mask_lesion
        return _suspicious(out, probs, class_names, policy)
    head_lesion = head_finds_lesion(probs, class_names, no_lesion_class, policy)
    if policy.lesion_rule == "mask":
        found = mask_lesion
    else:
        found = head_lesion or (mask_lesion and policy.lesion_rule == "mask_or_threshold")
    lesion_idx = [i for i, n in enumerate(class_names) if n != no_lesion_class]
    out["class"] = class_names[max(lesion_idx, key=lambda i: probs[i])] if found else no_lesion_class
    agree = head_lesion == mask_lesion
    if found and mask_lesion:
        note = f"{out['class']} lesion" + ("" if head_lesion else
                                          f" segmented; the class head favours {no_lesion_class}: review the image")
    elif found:
        note = f"{out['class']} suspected by the class head, not localised; review the image"
    elif mask_lesion:
        note = f"no lesion found (class head: {no_lesion_class}); segmented region is not a finding"
    elif head_lesion:
        note = "no lesion segmented (the class head suggests a lesion): review the image"
    else:
        note = "no lesion found"
    out.update(found=found, structure="lesion", lesion_found=found,
               source="both" if agree else ("mask" if found == mask_lesion else "class head"),
               agreement=agree, region_is_finding=found and mask_lesion,
               verdict="lesion found" if found else "no lesion found", note=note)
    return _suspicious(out, probs, class_names, policy)


def _suspicious(out: dict, probs: list[float], names: Sequence[str], policy: DecisionPolicy) -> dict:
    """The malignancy operating point: flag a found lesion whose P(suspicious class) reaches the threshold."""
    if policy.suspicious_threshold is None or policy.suspicious_class not in names or not probs:
        return out
    p = probs[list(names).index(policy.suspicious_class)]
    out["suspicious"] = bool(out["found"] and p >= policy.suspicious_threshold)
    out["suspicious_threshold"] = {"class": policy.suspicious_class, "threshold": policy.suspicious_threshold}
    if out["suspicious"]:
        out["note"] += f"; suspicious for {policy.suspicious_class} (p {p:.2f} >= {policy.suspicious_threshold:.2f})"
    return out
