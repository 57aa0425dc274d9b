"""No verdict on what is out of scope.

When the domain check says an input does not look like the model's training images, the model's
class, probabilities and measurements for it are not findings: every place a person looks (the CLI
table, the overlay, the service's API and viewer, ``listen``) shows "out of scope" and the reason
only. The raw numbers are not thrown away: they move under ``withheld`` (results.json summary, the
measurements JSON), from where a flag (``predict --show-withheld``) or an API field (``?raw=true``)
brings them back, marked as withheld, for whoever asks.
"""

from __future__ import annotations

from typing import Optional

BANNER = "OUT OF SCOPE: not a finding"
# the summary keys that would read as a finding: class, probabilities, lesion decision, sizes
FINDING_KEYS = ("class", "class_probabilities", "lesion_found", "decision_source", "max_area", "max_diameter",
                "max_structures_per_frame", "frames_with_structures", "biometry", "confidence", "suspicious",
                "suspicious_threshold", "outline")


def out_of_scope(domain: Optional[dict]) -> bool:
    return domain is not None and domain.get("in_scope") is False


def reason(domain: dict) -> str:
    """One line, no numbers that could read as a finding: the domain score and its threshold."""
    return (f"does not look like the model's training images (domain score {domain['score']:.1f} > "
            f"threshold {domain['threshold']:.1f})")


def present(summary: dict, domain: Optional[dict]) -> dict:
    """The summary as shown: for an out-of-scope input the finding keys are emptied and their values
    kept under ``withheld``; ``scope_reason`` says why. In-scope summaries are returned unchanged."""
    if not out_of_scope(domain):
        return summary
    out = dict(summary)
    out["withheld"] = {k: out[k] for k in FINDING_KEYS if k in out}
    for k in FINDING_KEYS:
        if k in out:
            out[k] = None
    out["scope_reason"] = reason(domain)
    return out


def overlay_labels(mask, caption, biometry, domain: Optional[dict]):
    """(mask, caption, biometry, banner) to draw: out of scope, the picture only, under the banner
    with the reason; no mask, class or size."""
    import numpy as np

    if not out_of_scope(domain):
        return mask, caption, biometry, None
    head, _, tail = reason(domain).partition(" (")
    return np.zeros_like(mask), [head, "(" + tail] if tail else [head], None, BANNER  # two lines fit small images


def decision_fields(decision: dict, domain: Optional[dict]) -> dict:
    """The measurements JSON's ``decision`` (class, probabilities): withheld when out of scope."""
    if not out_of_scope(domain):
        return {"decision": decision}
    return {"decision": None, "withheld": {"decision": decision}, "scope_reason": reason(domain)}
