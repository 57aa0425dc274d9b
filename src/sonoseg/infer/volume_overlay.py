"""The overlay picture of a 3D prediction: one axial slice (radiological view: the patient's right on
the left, anterior up; pixels square in mm), each organ filled and outlined in its label-table colour,
a legend (colour, name, training label value; organs not on this slice or not found are listed as such)
and the slice's position along S in mm (the same number a DICOM viewer shows as slice location)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sonoseg.outputs.label_table import LabelEntry
from sonoseg.infer.volume_measure import ras_xyz

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_ROW = 22  # legend row height, px
_PANEL = 280  # legend width, px


@dataclass
class OverlayInfo:
    path: Path
    slice_index: int  # along S in the RAS-reoriented grid (0 = most inferior)
    position_mm: float  # S coordinate of the slice centre (RAS = DICOM patient z)
    on_slice: list[int]  # label values drawn on it


def _display(slice_xy: np.ndarray, sx: float, sy: float, interp: int) -> np.ndarray:
    """[x, y] RAS slice -> rows anterior..posterior, columns right..left, resampled to square pixels."""
    img = np.ascontiguousarray(slice_xy.T[::-1, ::-1])
    h, w = img.shape[:2]
    px = min(sx, sy)
    size = (max(1, int(round(w * sx / px))), max(1, int(round(h * sy / px))))
    if size != (w, h):
        img = cv2.resize(img, size, interpolation=interp)
    scale = max(1.0, 384.0 / max(size))  # small volumes: enlarge so the outlines and text are readable
    if scale > 1.0:
        img = cv2.resize(img, (int(size[0] * scale), int(size[1] * scale)), interpolation=interp)
    return img


def render_volume_overlay(image_zyx: np.ndarray, labels_zyx: np.ndarray, affine: np.ndarray,
                          entries: list[LabelEntry], window: tuple[float, float]) -> tuple[np.ndarray, int, float, list[int]]:
    """RGB picture of the axial slice with the most labelled voxels; (rgb, slice index, S mm, labels on it)."""
    img, aff = ras_xyz(image_zyx, affine)
    lab, _ = ras_xyz(labels_zyx, affine)
    k = int(np.argmax((lab > 0).reshape(-1, lab.shape[2]).sum(0)))
    sp = np.sqrt((aff[:3, :3] ** 2).sum(axis=0))
    centre = aff @ np.array([(lab.shape[0] - 1) / 2, (lab.shape[1] - 1) / 2, k, 1.0])
    lo, hi = window
    grey = (np.clip((img[:, :, k].astype(np.float32) - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    grey = _display(grey, sp[0], sp[1], cv2.INTER_LINEAR)
    lab2 = _display(lab[:, :, k].astype(np.uint16), sp[0], sp[1], cv2.INTER_NEAREST)
    rgb = cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
    out = rgb.copy()
    on_slice = []
    for e in entries:
        m = lab2 == e.value
        if not m.any():
            continue
        on_slice.append(e.value)
        solid = np.empty_like(rgb)
        solid[:] = e.color
        out[m] = cv2.addWeighted(rgb, 0.6, solid, 0.4, 0.0)[m]
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, e.color, 1)
    found = {int(v) for v in np.unique(lab)} - {0}
    return _with_legend(out, entries, on_slice, found, k, lab.shape[2], float(centre[2])), k, float(centre[2]), on_slice


def _with_legend(img: np.ndarray, entries: list[LabelEntry], on_slice: list[int], found: set[int], k: int, n: int,
                 s_mm: float) -> np.ndarray:
    """The picture with a legend panel on its right: the slice position, then one row per label."""
    rows = 3 + len(entries)
    h = max(img.shape[0], rows * _ROW + 10)
    canvas = np.zeros((h, img.shape[1] + _PANEL, 3), np.uint8)
    canvas[: img.shape[0], : img.shape[1]] = img
    x0 = img.shape[1] + 10
    white, grey = (255, 255, 255), (150, 150, 150)
    cv2.putText(canvas, f"axial, S = {s_mm:+.1f} mm", (x0, _ROW), _FONT, 0.5, white, 1, cv2.LINE_AA)
    cv2.putText(canvas, f"slice {k + 1} of {n}; R on the left", (x0, 2 * _ROW), _FONT, 0.45, grey, 1, cv2.LINE_AA)
    for i, e in enumerate(entries):
        y = (3 + i) * _ROW
        canvas[y - 13: y + 1, x0: x0 + 14] = e.color  # the exact label colour
        note = "" if e.value in on_slice else (" (other slices)" if e.value in found else " (not found)")
        cv2.putText(canvas, f"{e.value} {e.name}{note}"[:34], (x0 + 20, y), _FONT, 0.45,
                    white if e.value in found else grey, 1, cv2.LINE_AA)
    return canvas


def write_volume_overlay(image_zyx: np.ndarray, labels_zyx: np.ndarray, affine: np.ndarray,
                         entries: list[LabelEntry], window: tuple[float, float], path: Path) -> OverlayInfo:
    from sonoseg.infer.outputs import write_png

    rgb, k, s_mm, on_slice = render_volume_overlay(image_zyx, labels_zyx, affine, entries, window)
    write_png(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), path, "overlay")
    return OverlayInfo(path, k, round(s_mm, 2), on_slice)
