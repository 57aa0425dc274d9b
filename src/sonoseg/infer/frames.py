"""One code path from a mask frame to its measurement record, shared by ``predict`` and ``measure``.

The measurements JSON has ONE shape for every input (single image, cine, volume, a user's mask)::

    {"input": name, "kind": "image|cine|volume", "unit": "mm|px", "pixel_spacing_mm": [row, col] | null,
     "spacing_source": "cli --spacing|labels.csv|PixelSpacing|PNG pHYs|NIfTI pixdim|..." | null,
     "frame_time_ms": float | null, "contour": "edge|centre", "mask_values": ...,
     "frames": [{"index": 0, "time_ms": 0.0 | null, "structures": [...], "biometry": {...}?}, ...],
     "chosen_frame": int, ...}

A single image is a list of one frame. Frame records are dicts and the payload is a dict, so later
fields (classification, confidence, domain score) are added without changing the shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

MASK_VALUES = "label values in every format (PNG, NIfTI): 0 = background, 1..K = structure label"


@dataclass
class MeasureOptions:
    spacing: Optional[tuple[float, float]] = None
    spacing_source: Optional[str] = None
    contour: str = "edge"
    biometry: bool = False
    ellipse_fit: bool = False
    names: dict = field(default_factory=dict)
    frame_time_ms: Optional[float] = None

    @property
    def unit(self) -> str:
        return "mm" if self.spacing else "px"

    @classmethod
    def from_config(cls, config, spacing=None, spacing_source=None, frame_time_ms=None, **overrides) -> "MeasureOptions":
        m, pp = config.measure, config.postprocess
        opts = cls(spacing, spacing_source, m.contour, m.biometry, pp.ellipse_fit, dict(m.names), frame_time_ms)
        for k, v in overrides.items():
            if v is not None:
                setattr(opts, k, v)
        return opts


def measure_frame(mask: np.ndarray, index: int, opts: MeasureOptions) -> tuple[np.ndarray, dict]:
    """(mask after the optional ellipse fit, frame record). The record is a dict open to extra keys."""
    from sonoseg.infer.biometry import biometry, ellipse_fit_mask, largest
    from sonoseg.infer.measure import measure_mask

    if opts.ellipse_fit and mask.any():
        mask = ellipse_fit_mask(mask, opts.spacing, opts.contour)
    structures = measure_mask(mask, opts.spacing, names=opts.names or None, contour=opts.contour)
    rec = {"index": int(index),
           "time_ms": round(index * opts.frame_time_ms, 3) if opts.frame_time_ms else None,
           "structures": structures}
    if opts.biometry:
        rec["biometry"] = biometry(largest(structures), opts.spacing)
    return mask, rec


def chosen_reason(rec: dict, opts: MeasureOptions) -> str:
    """Why this frame is shown, in the model's words: "largest fetal head", "no fetal head found"
    (names from ``measure.names``; "structure" where the labels have none)."""
    if not rec["structures"]:
        names = set(opts.names.values())
        return f"no {names.pop() if len(names) == 1 else 'structure'} found"
    s = max(rec["structures"], key=lambda x: x["area"])
    return f"largest {s.get('name') or 'structure'}"


def frame_area(rec: dict) -> float:
    return max((float(s["area"]) for s in rec["structures"]), default=0.0)


def payload(name: str, kind: str, frames: list[dict], opts: MeasureOptions, chosen: int, **extra) -> dict:
    """The measurements JSON of one input (see the module docstring)."""
    out = {"input": name, "kind": kind, "unit": opts.unit,
           "pixel_spacing_mm": list(opts.spacing) if opts.spacing else None,
           "spacing_source": opts.spacing_source if opts.spacing else None,
           "frame_time_ms": opts.frame_time_ms, "contour": opts.contour, "mask_values": MASK_VALUES,
           "n_frames": len(frames), "chosen_frame": int(chosen), "frames": frames}
    out.update(extra)
    return out


def summary(frames: list[dict], opts: MeasureOptions, chosen: int) -> dict:
    """The per-input line of results.json and the CLI table."""
    structs = [s for f in frames for s in f["structures"]]
    out = {"frames_with_structures": sum(1 for f in frames if f["structures"]),
           "max_structures_per_frame": max((len(f["structures"]) for f in frames), default=0),
           "max_area": max((s["area"] for s in structs), default=0.0),
           "max_diameter": max((s["max_diameter"] or 0.0 for s in structs), default=0.0),
           "unit": opts.unit, "spacing_source": opts.spacing_source if opts.spacing else None,
           "chosen_frame": int(chosen)}
    if opts.biometry and frames:
        out["biometry"] = frames[chosen].get("biometry")
    return out


def overlay_caption(rec: dict, opts: MeasureOptions, n_frames: int, why: str) -> list[str]:
    """Text lines drawn on an overlay: which frame, why it was chosen, the key measurements."""
    u = opts.unit
    lines = [f"frame {rec['index'] + 1}/{n_frames} ({why})" if n_frames > 1 else why]
    bio = rec.get("biometry")
    if bio:
        lines.append(f"HC {bio['hc']:.1f} {u}  BPD {bio['bpd']:.1f} {u}  OFD {bio['ofd']:.1f} {u}")
    elif rec["structures"]:
        s = max(rec["structures"], key=lambda x: x["area"])
        lines.append(f"area {s['area']:.1f} {u}2  max diameter {s['max_diameter'] or 0:.1f} {u}")
    if not opts.spacing:
        lines.append("no pixel spacing: sizes in px")
    return lines
