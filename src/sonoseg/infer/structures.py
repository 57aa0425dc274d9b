"""What a model segments, in words: one source for every name an output shows.

The measurements JSON, the overlay caption, the decision note and the DICOM SEG segment label (and so
its SNOMED CT code, :func:`sonoseg.outputs.dicom_seg.property_codes_for`) all take the name from here:

1. the model's ``measure.names`` (label value -> name), set at training and stored in the model file,
   e.g. ``{1: fetal head}`` from ``configs/fetal_head_biometry.yaml``;
2. else "lesion" for a model that says it segments lesions: a class head with a no-lesion class
   (the breast models: benign / malignant / normal);
3. else "structure" (binary) or "class K" (multi-class): a neutral word, never a diagnosis.
"""

from __future__ import annotations

LESION = "lesion"
NEUTRAL = "structure"


def says_lesion(config) -> bool:
    """The model itself says lesion: a structure named so, or a class head with a no-lesion class."""
    if any(str(v).strip().lower() == LESION for v in config.measure.names.values()):
        return True
    head = config.model.classification
    return bool(head is not None and head.enabled and head.no_lesion_class and head.no_lesion_class in head.names)


def structure_names(config) -> dict[int, str]:
    """label value -> name for every foreground label of the model (see the module docstring)."""
    given = {int(k): str(v) for k, v in config.measure.names.items()}
    if config.model.classes <= 1:
        return {1: given.get(1, LESION if says_lesion(config) else NEUTRAL)}
    return {c: given.get(c, f"class {c}") for c in range(1, config.model.classes)}


def structure_name(config) -> str:
    """The one word for what a binary model finds ("fetal head", "lesion", "structure"); for a
    multi-class model the neutral word."""
    names = structure_names(config)
    return names[1] if len(names) == 1 else NEUTRAL
