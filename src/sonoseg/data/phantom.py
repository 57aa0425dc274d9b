"""Synthetic B-mode ultrasound phantoms with known lesion masks (tests, demos, smoke training).

Physics kept deliberately simple but recognisable:
- fully developed speckle: the envelope |z| of a PSF-filtered complex Gaussian field is Rayleigh
  distributed and spatially correlated (axial < lateral correlation length);
- tissue echogenicity = smooth random texture + bright skin line, times exp(-alpha * depth);
- lesions are hypoechoic ellipses (random axes / orientation) with optional posterior acoustic
  shadowing or enhancement along the beam;
- optional convex-probe sector (black outside) and fake scanner UI (header bar, text, grey-scale
  bar) outside the imaging area, for region-of-interest tests.

Everything is drawn from one ``numpy.random.Generator(seed)``, so a seed fixes the phantom.
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Optional, Sequence

import cv2
import numpy as np

LesionKind = Literal["random", "benign", "malignant"]
Posterior = Literal["none", "shadow", "enhancement"]

SECTOR_HALF_ANGLE_DEG = 32.0
ATTENUATION = 0.7  # exp(-ATTENUATION * normalised depth)
GAIN = 0.75  # echogenicity 1.0 with mean speckle -> 0.75 * 255


@dataclass(frozen=True)
class Lesion:
    """One elliptical lesion in pixel coordinates (semi-axis ``a`` along the direction ``angle_deg``,
    measured from the image x axis towards +y; ``b`` perpendicular to it)."""

    cy: float
    cx: float
    a: float
    b: float
    angle_deg: float
    echogenicity: float  # relative to surrounding tissue (< 1: hypoechoic)
    posterior: str = "none"  # none | shadow | enhancement

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """bool mask of the pixel centres inside the ellipse."""
        yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
        t = math.radians(self.angle_deg)
        dx, dy = xx - self.cx, yy - self.cy
        u = dx * math.cos(t) + dy * math.sin(t)
        v = -dx * math.sin(t) + dy * math.cos(t)
        return (u / self.a) ** 2 + (v / self.b) ** 2 <= 1.0


@dataclass
class Phantom:
    image: np.ndarray  # uint8 (H, W)
    mask: np.ndarray  # uint8 (H, W) in {0, 1}
    lesions: list[Lesion]
    sector_mask: np.ndarray  # bool (H, W): the imaging area (everything outside is black or UI)
    imaging_box: tuple[int, int, int, int] = (0, 0, 0, 0)  # bbox of sector_mask, half-open (y0,x0,y1,x1)
    ui_mask: Optional[np.ndarray] = None  # bool (H, W): pixels drawn by the fake UI overlay
    spacing_mm: tuple[float, float] = (0.1, 0.1)  # nominal (row, col) pixel spacing


@dataclass
class _Geometry:
    sector_mask: np.ndarray
    depth: np.ndarray  # 0 at the transducer face, 1 at the deepest imaged point
    lateral: np.ndarray  # -1..1 across the beam
    box: tuple[int, int, int, int]


def _inner_box(h: int, w: int, ui_overlay: bool) -> tuple[int, int, int, int]:
    """Where the imaging area goes; with UI, margins are left free for header, text and grey bar."""
    if ui_overlay:
        return (round(0.16 * h), round(0.05 * w), round(0.97 * h), round(0.82 * w))
    return (0, 0, h, w)


def _geometry(h: int, w: int, sector: bool, ui_overlay: bool) -> _Geometry:
    y0, x0, y1, x1 = _inner_box(h, w, ui_overlay)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5  # pixel centres
    if not sector:
        m = np.zeros((h, w), dtype=bool)
        m[y0:y1, x0:x1] = True
        depth = (yy - y0) / max(y1 - y0, 1)
        lateral = 2 * (xx - x0) / max(x1 - x0, 1) - 1
        return _Geometry(m, depth.clip(0, 1), lateral.clip(-1, 1), (y0, x0, y1, x1))
    half = math.radians(SECTOR_HALF_ANGLE_DEG)
    cx = (x0 + x1) / 2
    standoff = 0.12 * (y1 - y0)  # virtual apex above the top of the imaging area
    apex_y = y0 - standoff
    r0 = standoff
    r1 = min(y1 - apex_y, ((x1 - x0) / 2) / math.sin(half))
    r = np.hypot(yy - apex_y, xx - cx)
    theta = np.arctan2(xx - cx, yy - apex_y)
    m = (r >= r0) & (r <= r1) & (np.abs(theta) <= half)
    rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
    box = (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
    depth = ((r - r0) / (r1 - r0)).clip(0, 1)
    return _Geometry(m, depth, (theta / half).clip(-1, 1), box)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    f = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), sigma)
    return f / (f.std() + 1e-8)


def _speckle(rng: np.random.Generator, shape: tuple[int, int], side: int) -> np.ndarray:
    """Rayleigh-distributed, spatially correlated speckle with unit mean."""
    s_ax, s_lat = max(0.6, side / 320), max(1.0, side / 170)  # PSF: axial sharper than lateral
    re = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), sigmaX=s_lat, sigmaY=s_ax)
    im = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), sigmaX=s_lat, sigmaY=s_ax)
    env = np.hypot(re, im)
    return env / env.mean()


def _sample_lesion(
    rng: np.random.Generator, geo: _Geometry, side: int, kind: LesionKind
) -> Lesion:
    ok = np.argwhere((geo.depth > 0.2) & (geo.depth < 0.7) & (np.abs(geo.lateral) < 0.6) & geo.sector_mask)
    cy, cx = ok[rng.integers(len(ok))] + 0.5
    a = rng.uniform(0.07, 0.15) * side
    b = a * rng.uniform(0.5, 0.95)
    if kind == "random":
        kind = "benign" if rng.random() < 0.5 else "malignant"
    if kind == "benign":  # wider than tall, smooth, often posterior enhancement
        angle = rng.uniform(-20, 20)
        posterior = "enhancement" if rng.random() < 0.6 else "none"
    else:  # taller than wide, often posterior shadowing
        angle = 90 + rng.uniform(-25, 25)
        posterior = "shadow" if rng.random() < 0.7 else "none"
    return Lesion(float(cy), float(cx), float(a), float(b), float(angle), float(rng.uniform(0.12, 0.3)), posterior)


def _place_lesions(
    rng: np.random.Generator, geo: _Geometry, n: int, side: int, kind: LesionKind
) -> tuple[list[Lesion], list[np.ndarray]]:
    shape = geo.sector_mask.shape
    inside = cv2.erode(geo.sector_mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    lesions: list[Lesion] = []
    masks: list[np.ndarray] = []
    taken = np.zeros(shape, dtype=bool)
    for _ in range(n):
        for _attempt in range(60):
            les = _sample_lesion(rng, geo, side, kind)
            m = les.mask(shape)
            if m.sum() < 9 or (m & ~inside).any():
                continue
            grown = cv2.dilate(m.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
            if (grown & taken).any():
                continue
            lesions.append(les)
            masks.append(m)
            taken |= grown
            break
    return lesions, masks


def _posterior_factor(geo: _Geometry, m: np.ndarray, kind: str) -> np.ndarray:
    """Multiplicative band behind a lesion along the beam (shadow < 1 < enhancement)."""
    if kind == "none":
        return np.ones(m.shape, dtype=np.float32)
    lat, dep = geo.lateral[m], geo.depth[m]
    l0, l1 = float(lat.min()), float(lat.max())
    d_mid, d_max = float(dep.mean()), float(dep.max())
    width = max(l1 - l0, 1e-3)
    edge = 0.15 * width
    across = np.clip(np.minimum(geo.lateral - l0, l1 - geo.lateral) / edge + 0.5, 0, 1)
    along = np.clip((geo.depth - d_mid) / max(d_max - d_mid, 1e-3), 0, 1)
    strength = -0.5 if kind == "shadow" else 0.45
    return (1 + strength * across * along).astype(np.float32)


def _draw_ui(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Header bar with text, a grey-scale bar and parameter text, all outside the imaging area."""
    h, w = img.shape
    before = img.copy()
    font, fs = cv2.FONT_HERSHEY_SIMPLEX, max(0.25, min(h, w) / 420)
    th = 1
    cv2.rectangle(img, (round(0.02 * w), round(0.015 * h)), (round(0.62 * w), round(0.085 * h)), 70, -1)
    cv2.putText(img, f"L{rng.integers(5, 15)}-3 {rng.integers(10, 99)}Hz", (round(0.04 * w), round(0.07 * h)), font, fs, 230, th, cv2.LINE_AA)
    cv2.putText(img, "RT BR", (round(0.68 * w), round(0.07 * h)), font, fs, 255, th, cv2.LINE_AA)
    gx0, gx1 = round(0.90 * w), round(0.95 * w)
    gy0, gy1 = round(0.25 * h), round(0.70 * h)
    ramp = np.linspace(255, 0, gy1 - gy0, dtype=np.float32)[:, None]
    img[gy0:gy1, gx0:gx1] = ramp.astype(np.uint8)
    for i, txt in enumerate((f"G{rng.integers(40, 70)}", f"D{rng.uniform(3, 6):.1f}", "DR60")):
        cv2.putText(img, txt, (round(0.86 * w), round((0.80 + 0.06 * i) * h)), font, fs * 0.9, 220, th, cv2.LINE_AA)
    return img != before


def make_phantom(
    size: tuple[int, int] = (256, 256),
    n_lesions: int = 1,
    sector: bool = False,
    ui_overlay: bool = False,
    seed: int = 0,
    speckle: bool = True,
    lesion_kind: LesionKind = "random",
) -> Phantom:
    """One synthetic B-mode image (uint8) with its lesion mask (uint8, {0,1}); same seed, same image.

    ``lesion_kind`` biases lesion shape/acoustics: benign = wider-than-tall + enhancement,
    malignant = taller-than-wide + shadowing (both common sonographic signs).
    """
    h, w = int(size[0]), int(size[1])
    if h < 32 or w < 32:
        raise ValueError(f"phantom size must be at least 32x32, got {size}")
    rng = np.random.default_rng(seed)
    side = min(h, w)
    geo = _geometry(h, w, sector, ui_overlay)

    tissue = 0.62 + 0.13 * _smooth_field(rng, (h, w), side / 14) + 0.05 * _smooth_field(rng, (h, w), side / 60)
    tissue = np.where(geo.depth < 0.035, 1.0, tissue)  # skin line
    tissue = np.clip(tissue, 0.3, 1.2).astype(np.float32)

    lesions, masks = _place_lesions(rng, geo, n_lesions, side, lesion_kind)
    label = np.zeros((h, w), dtype=np.uint8)
    echo = tissue.copy()
    for les, m in zip(lesions, masks):
        echo *= _posterior_factor(geo, m, les.posterior)
    for les, m in zip(lesions, masks):
        soft = cv2.GaussianBlur(m.astype(np.float32), (0, 0), 0.8)  # smooth edge; mask = centre test
        inner = les.echogenicity * (1 + 0.15 * _smooth_field(rng, (h, w), side / 40))
        echo = echo * (1 - soft) + inner.astype(np.float32) * soft
        label[m] = 1
    echo *= np.exp(-ATTENUATION * geo.depth).astype(np.float32)
    if speckle:
        echo *= _speckle(rng, (h, w), side)
    img = np.clip(echo * (GAIN * 255.0), 0, 255)
    img[~geo.sector_mask] = 0
    image = np.rint(img).astype(np.uint8)
    ui_mask = _draw_ui(image, rng) if ui_overlay else None
    return Phantom(image, label, lesions, geo.sector_mask, geo.box, ui_mask)


def _write_dicom(path: Path, ph: Phantom, uid_seed: str, patient_id: str) -> None:
    """Minimal US Image Storage object: MONOCHROME2 8-bit, pixel spacing + one tissue US region."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.dataset import Dataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    us_sop_class = "1.2.840.10008.5.1.4.1.1.6.1"
    sop_uid = generate_uid(entropy_srcs=[uid_seed, "sop"])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = us_sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = us_sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[patient_id, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[uid_seed, "series"])
    ds.Modality = "US"
    ds.PatientName = "Phantom^Synthetic"
    ds.PatientID = patient_id
    ds.Manufacturer = "sonoseg phantom"
    ds.Rows, ds.Columns = ph.image.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelSpacing = [f"{ph.spacing_mm[0]:g}", f"{ph.spacing_mm[1]:g}"]
    y0, x0, y1, x1 = ph.imaging_box
    region = Dataset()
    region.RegionSpatialFormat = 1
    region.RegionDataType = 1
    region.RegionFlags = 0
    region.RegionLocationMinX0 = int(x0)
    region.RegionLocationMinY0 = int(y0)
    region.RegionLocationMaxX1 = int(x1) - 1
    region.RegionLocationMaxY1 = int(y1) - 1
    region.PhysicalUnitsXDirection = 3  # cm
    region.PhysicalUnitsYDirection = 3
    region.PhysicalDeltaX = ph.spacing_mm[1] / 10.0
    region.PhysicalDeltaY = ph.spacing_mm[0] / 10.0
    ds.SequenceOfUltrasoundRegions = [region]
    ds.PixelData = np.ascontiguousarray(ph.image).tobytes()
    ds.save_as(path, enforce_file_format=True)


def write_phantom_dataset(
    root: str | Path,
    n: int = 20,
    size: tuple[int, int] = (128, 128),
    seed: int = 0,
    classes: Sequence[str] = ("benign", "malignant"),
    dicom: bool = False,
    sector: bool = False,
    ui_overlay: bool = False,
    n_lesions: int = 1,
) -> Path:
    """Write ``n`` phantoms in sonoseg's dataset layout and return ``root``:

    root/images/<stem>.png (or .dcm with ``dicom=True``), root/masks/<stem>.png (0/255),
    root/labels.csv with columns image,class,group (image = file name inside images/, group =
    patient id; two consecutive images share a patient and its class, for group-aware splits).
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    classes = list(classes)
    if not classes:
        raise ValueError("classes must not be empty")
    rows = []
    for i in range(int(n)):
        patient = i // 2
        cls = classes[patient % len(classes)]
        kind: LesionKind = cls if cls in ("benign", "malignant") else "random"  # type: ignore[assignment]
        k = 0 if cls == "normal" else n_lesions  # "normal": no lesion, empty mask (as BUSI's normal class)
        ph = make_phantom(size, k, sector, ui_overlay, seed=seed * 1_000_003 + i, lesion_kind=kind)
        stem = f"phantom_{i:04d}"
        group = f"P{patient:04d}"
        if dicom:
            name = f"{stem}.dcm"
            _write_dicom(root / "images" / name, ph, f"sonoseg-phantom-{seed}-{i}", group)
        else:
            name = f"{stem}.png"
            cv2.imwrite(str(root / "images" / name), ph.image)
        cv2.imwrite(str(root / "masks" / f"{stem}.png"), ph.mask * 255)
        rows.append({"image": name, "class": cls, "group": group})
    with open(root / "labels.csv", "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=["image", "class", "group"])
        wr.writeheader()
        wr.writerows(rows)
    return root


def lesion_dicts(ph: Phantom) -> list[dict]:
    """Lesion parameters as plain dicts (JSON-friendly)."""
    return [asdict(les) for les in ph.lesions]
