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
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def decide(mask_pixels: int, class_probs: Optional[np.ndarray], class_names: Sequence[str],
           no_lesion_class: Optional[str], structure: str = "lesion") -> dict:
    """The decision for one image (or one cine, with the largest frame's mask). JSON-ready dict:
    ``found``, ``structure``, ``lesion_found`` (lesion models only), ``source``, ``agreement``, ``class``,
    ``class_probabilities``, ``region_is_finding``, ``verdict``, ``note``."""
    mask_lesion = int(mask_pixels) > 0
    out: dict = {"class": None, "class_probabilities": None}
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
        return out
    head_lesion = out["class"] != no_lesion_class
    agree = head_lesion == mask_lesion
    if head_lesion and mask_lesion:
        note = f"{out['class']} lesion"
    elif not head_lesion and not mask_lesion:
        note = "no lesion found"
    elif not head_lesion:
        note = f"no lesion found (class head: {no_lesion_class}); segmented region is not a finding"
    else:
        note = f"{out['class']} suspected by the class head, not localised; review the image"
    out.update(found=head_lesion, structure="lesion", lesion_found=head_lesion, source="both" if agree else "class head",
               agreement=agree, region_is_finding=head_lesion and mask_lesion,
               verdict="lesion found" if head_lesion else "no lesion found", note=note)
    return out
