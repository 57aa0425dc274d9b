"""The label table of a 3D prediction: training label value -> name and colour, written beside the
label map in the two formats viewers read, and used for the overlay and the DICOM SEG, so the NIfTI,
the table, the picture and the SEG say the same thing.

* ``<stem>.labels.txt``: ITK-SNAP label description file (Segmentation > Label Editor > Import; ITK-SNAP's
  own format: ``IDX R G B A VIS MSH "LABEL"``).
* ``<stem>.labels.ctbl``: 3D Slicer colour table (``value name R G B A``; load it with Add Data, then pick
  it as the label map's colour node, or drop both files on Slicer). Slicer names have no spaces, so a
  space in a name is written as ``_``.

Colours: one per label, distinct, given by the label's position in the model's table (so one model
always draws an organ in the same colour): the Okabe-Ito colours the 2D overlays use, then further
colours spread around the hue circle, never a repeat.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from sonoseg.io.safety import write_text

Color = tuple[int, int, int]
_BASE: tuple[Color, ...] = (
    (230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0),
    (204, 121, 167), (153, 153, 153), (117, 112, 179), (166, 118, 29), (27, 158, 119), (231, 41, 138),
)


@dataclass(frozen=True)
class LabelEntry:
    value: int  # the label value in the label map (the training label)
    name: str
    color: Color
    segment_number: int  # the DICOM SEG segment that holds it (1..K in table order)


def distinct_colors(n: int) -> list[Color]:
    """``n`` different RGB colours: the base set, then golden-angle hues at alternating lightness."""
    out: list[Color] = list(_BASE[:n])
    k = 0
    while len(out) < n:
        h = (k * 0.618033988749895) % 1.0
        light = (0.45, 0.65, 0.35)[k % 3]
        c = tuple(int(round(255 * v)) for v in colorsys.hls_to_rgb(h, light, 0.75))
        if c not in out and c != (0, 0, 0):
            out.append(c)
        k += 1
    return out


def label_table(names: Mapping[int, str]) -> list[LabelEntry]:
    """Entries in label-value order (= the model's class order)."""
    values = sorted(int(v) for v in names)
    return [LabelEntry(v, str(names[v]), c, i) for i, (v, c) in enumerate(zip(values, distinct_colors(len(values))), 1)]


def _quoted(name: str) -> str:
    return name.replace('"', "'")


def write_itksnap(entries: list[LabelEntry], path: Path) -> Path:
    lines = ["################################################", "# ITK-SnAP Label Description File",
             "# written by sonoseg: label values as in the label map (training labels)",
             "# IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL", "################################################",
             '    0     0    0    0        0  0  0    "Clear Label"']
    lines += [f'{e.value:5d} {e.color[0]:5d} {e.color[1]:4d} {e.color[2]:4d}        1  1  1    "{_quoted(e.name)}"'
              for e in entries]
    return write_text(path, "\n".join(lines) + "\n", "label table")


def slicer_name(name: str) -> str:
    return "_".join(str(name).split()) or "unnamed"


def write_slicer_ctbl(entries: list[LabelEntry], path: Path) -> Path:
    lines = ["# Color table file written by sonoseg: label values as in the label map (training labels)",
             f"# {len(entries) + 1} values", "0 Background 0 0 0 0"]
    lines += [f"{e.value} {slicer_name(e.name)} {e.color[0]} {e.color[1]} {e.color[2]} 255" for e in entries]
    return write_text(path, "\n".join(lines) + "\n", "colour table")


def write_label_tables(entries: list[LabelEntry], out: Path, stem: str) -> dict[str, str]:
    """Both files beside ``<stem>.labels.nii.gz``; returns their paths by format."""
    return {"itksnap": str(write_itksnap(entries, out / f"{stem}.labels.txt")),
            "slicer": str(write_slicer_ctbl(entries, out / f"{stem}.labels.ctbl"))}


def as_json(entries: list[LabelEntry]) -> list[dict]:
    return [{"value": e.value, "name": e.name, "color_rgb": list(e.color), "seg_segment_number": e.segment_number}
            for e in entries]
