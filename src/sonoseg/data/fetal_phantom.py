"""Synthetic fetal-head phantom: ellipses of known circumference at several pixel sizes.

For the contour benchmark (``bench/contour.py``) and the bring-your-own-task walk-through test. The
truth is independent of sonoseg's measuring code: each head is an ellipse with known semi-axes in
millimetres, so its circumference (HC) follows from the axes alone (Ramanujan's second formula,
error < 1e-9 relative at these eccentricities).

Two ways of turning an ellipse into a filled mask, as annotations are made in practice:

- ``"drawn"``: the outline drawn *on* the curve with ``cv2.ellipse`` and filled (HC18-style
  annotations; a network trained on them reproduces the same boundary);
- ``"centre-inside"``: every pixel whose centre lies inside the ellipse (``skimage.draw``, filled
  polygons, most labelling tools).

Images are PNG without a physical size (as exported frames usually are): the pixel size of each
image is in ``labels.csv`` (``spacing``), with the true HC in ``head_circumference_mm``.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import cv2
import numpy as np

MaskStyle = Literal["drawn", "centre-inside"]


@dataclass(frozen=True)
class Head:
    """An elliptical head in pixels: centre (row, col), semi-axes ``a`` >= ``b``, ``a`` at ``angle_deg``
    from the image x axis towards +y."""

    cy: float
    cx: float
    a: float
    b: float
    angle_deg: float

    def circumference(self, pixel_mm: float) -> float:
        """True HC in mm (isotropic pixels of ``pixel_mm``), Ramanujan's second approximation."""
        a, b = self.a * pixel_mm, self.b * pixel_mm
        h = ((a - b) / (a + b)) ** 2
        return math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))


def head_mask(shape: tuple[int, int], head: Head, style: MaskStyle = "drawn") -> np.ndarray:
    """uint8 0/1 filled mask of ``head`` by the rasterisation ``style`` (see the module docstring)."""
    m = np.zeros(shape, np.uint8)
    if style == "drawn":
        s = 16  # cv2 sub-pixel coordinates (shift=4)
        cv2.ellipse(m, (round(head.cx * s), round(head.cy * s)), (round(head.a * s), round(head.b * s)),
                    head.angle_deg, 0, 360, 1, -1, cv2.LINE_8, 4)
        return m
    if style == "centre-inside":
        rr, cc = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
        t = math.radians(head.angle_deg)
        dx, dy = cc - head.cx, rr - head.cy
        u = dx * math.cos(t) + dy * math.sin(t)
        v = -dx * math.sin(t) + dy * math.cos(t)
        m[(u / head.a) ** 2 + (v / head.b) ** 2 <= 1.0] = 1
        return m
    raise ValueError(f"unknown mask style {style!r}")


def random_head(rng: np.random.Generator, shape: tuple[int, int]) -> Head:
    """A head filling 45-75 % of the smaller image side, axis ratio 0.7-0.85, any orientation."""
    side = min(shape)
    a = side * rng.uniform(0.22, 0.37)
    b = a * rng.uniform(0.7, 0.85)
    return Head(shape[0] / 2 + rng.uniform(-0.05, 0.05) * shape[0], shape[1] / 2 + rng.uniform(-0.05, 0.05) * shape[1],
                a, b, float(rng.uniform(0, 180)))


def head_image(shape: tuple[int, int], head: Head, rng: np.random.Generator) -> np.ndarray:
    """A B-mode-like frame: speckle background, a bright skull ring on the head's outline, a darker brain."""
    h, w = shape
    speckle = np.abs(rng.normal(size=shape) + 1j * rng.normal(size=shape)) / math.sqrt(2)
    speckle = cv2.GaussianBlur(speckle.astype(np.float32), (0, 0), 1.0)
    img = 0.35 * speckle
    inside = head_mask(shape, head, "centre-inside").astype(bool)
    img[inside] *= 0.55
    ring = np.zeros(shape, np.uint8)
    cv2.ellipse(ring, (round(head.cx * 16), round(head.cy * 16)), (round(head.a * 16), round(head.b * 16)),
                head.angle_deg, 0, 360, 1, max(2, round(min(h, w) / 40)), cv2.LINE_AA, 4)
    img = img + 0.6 * cv2.GaussianBlur(ring.astype(np.float32), (0, 0), 1.0)
    return np.clip(img * 255, 0, 255).astype(np.uint8)


def write_fetal_head_dataset(root: str | Path, n: int = 12, size: tuple[int, int] = (96, 128),
                             pixel_sizes_mm: Sequence[float] = (0.15, 0.3), seed: int = 0,
                             style: MaskStyle = "drawn") -> Path:
    """``root/images/*.png``, ``root/masks/*.png`` (0/255) and ``root/labels.csv`` (image, patient,
    spacing, head_circumference_mm): image i has pixel size ``pixel_sizes_mm[i % len]``, two images per
    synthetic patient."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        head = random_head(rng, size)
        px = float(pixel_sizes_mm[i % len(pixel_sizes_mm)])
        name = f"head_{i:03d}.png"
        cv2.imwrite(str(root / "images" / name), head_image(size, head, rng))
        cv2.imwrite(str(root / "masks" / name), head_mask(size, head, style) * 255)
        rows.append({"image": name, "patient": f"p{i // 2:03d}", "spacing": f"{px:g}",
                     "head_circumference_mm": f"{head.circumference(px):.3f}"})
    with open(root / "labels.csv", "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    return root
