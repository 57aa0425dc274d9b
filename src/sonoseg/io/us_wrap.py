"""Wrap plain images / frame stacks as ultrasound DICOM (US Image / US Multi-frame Image Storage).

Used to turn public PNG datasets (e.g. BUSI) into small sample studies that exercise the DICOM path:
calibration in SequenceOfUltrasoundRegions (as real scanners write it, no PixelSpacing), a synthetic
anonymous patient, and every Type 1/2 attribute of the US IODs that highdicom needs to derive a SEG.
pydicom has no IOD-level writer, so the attribute set is spelled out here.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

from sonoseg import __version__
from sonoseg.errors import InputError

US_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1"
US_MULTIFRAME_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.3.1"
SAMPLE_PATIENT_NAME = "ANONYMOUS^SAMPLE"
SAMPLE_PATIENT_ID = "SONOSEG-SAMPLE"
UNIT_CM = 3


def _uid(seed: Optional[str], role: str) -> str:
    """Fresh UID, or a deterministic one derived from (seed, role) so sample files are reproducible."""
    return generate_uid(entropy_srcs=[str(seed), role]) if seed is not None else generate_uid()


def _as_uint8(arr: np.ndarray, out_path: Path, what: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if np.issubdtype(arr.dtype, np.integer) and arr.size and arr.min() >= 0 and arr.max() <= 255:
        return np.ascontiguousarray(arr.astype(np.uint8))
    raise InputError(out_path, f"{what} must be uint8 (or integers in 0..255), got {arr.dtype}")


def _region(rows: int, cols: int, spacing_mm: tuple[float, float]) -> Dataset:
    sr, sc = spacing_mm
    item = Dataset()
    item.RegionSpatialFormat = 1  # 2D tissue image
    item.RegionDataType = 1  # tissue
    item.RegionFlags = 0
    item.RegionLocationMinX0 = 0
    item.RegionLocationMinY0 = 0
    item.RegionLocationMaxX1 = cols - 1
    item.RegionLocationMaxY1 = rows - 1
    item.PhysicalUnitsXDirection = UNIT_CM
    item.PhysicalUnitsYDirection = UNIT_CM
    item.PhysicalDeltaX = float(sc) / 10.0  # FD, cm per pixel
    item.PhysicalDeltaY = float(sr) / 10.0
    return item


def _aspect_ratio(spacing_mm: tuple[float, float]) -> Optional[list[int]]:
    """PixelAspectRatio (vertical:horizontal integers); Type 1C when pixels are not square and no
    PixelSpacing is present — exactly the anisotropic US case."""
    ratio = Fraction(float(spacing_mm[0]) / float(spacing_mm[1])).limit_denominator(10000)
    if ratio == 1:
        return None
    return [ratio.numerator, ratio.denominator]


@dataclass(frozen=True)
class UsWrapOptions:
    """The header of a wrapped file (the pixels and their geometry are the call's arguments).

    ``anonymous`` writes the synthetic patient ANONYMOUS^SAMPLE / SONOSEG-SAMPLE; otherwise
    ``patient_name``/``patient_id`` (or empty). ``seed_uid`` makes all UIDs deterministic; pass
    ``study_uid``/``series_uid`` to put several files in one study/series. ``series_description``:
    default "sonoseg sample" (image) or "sonoseg sample cine". ``burned_in_annotation``: None leaves
    BurnedInAnnotation out.
    """

    series_description: Optional[str] = None
    frame_of_reference: Optional[str] = None
    anonymous: bool = True
    seed_uid: Optional[str] = None
    patient_name: Optional[str] = None
    patient_id: Optional[str] = None
    study_uid: Optional[str] = None
    series_uid: Optional[str] = None
    instance_number: int = 1
    burned_in_annotation: Optional[bool] = None


def _identity(ds: Dataset, sop_class: str, sop_uid: str, o: UsWrapOptions, default_description: str) -> None:
    """SOP Common, Patient (anonymous sample or as given), General Study / Series / Equipment / Image, and the
    optional Frame of Reference: every Type 1/2 attribute, dates empty so seeded files are byte-reproducible."""
    seed_uid = o.seed_uid
    # SOP Common
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    # Patient (Type 2 attributes present, empty when unknown)
    if o.anonymous:
        ds.PatientName = SAMPLE_PATIENT_NAME
        ds.PatientID = SAMPLE_PATIENT_ID
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = "sonoseg anonymous sample: no patient identifiers"
    else:
        ds.PatientName = o.patient_name or ""
        ds.PatientID = o.patient_id or ""
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    # General Study (dates left empty: Type 2, and keeps seeded files byte-reproducible)
    ds.StudyInstanceUID = o.study_uid or _uid(seed_uid, "study")
    ds.StudyDate = ""
    ds.StudyTime = ""
    ds.ReferringPhysicianName = ""
    ds.StudyID = ""
    ds.AccessionNumber = ""
    ds.StudyDescription = "sonoseg sample"
    # General Series
    ds.Modality = "US"
    ds.SeriesInstanceUID = o.series_uid or _uid(seed_uid, "series")
    ds.SeriesNumber = 1
    ds.SeriesDescription = default_description if o.series_description is None else o.series_description
    # Frame of Reference (User optional in the US IODs; no patient geometry either way)
    if o.frame_of_reference is not None:
        ds.FrameOfReferenceUID = o.frame_of_reference
        ds.PositionReferenceIndicator = ""
    # General Equipment
    ds.Manufacturer = "sonoseg"
    ds.ManufacturerModelName = "sonoseg us_wrap"
    ds.SoftwareVersions = __version__
    # General Image
    ds.InstanceNumber = int(o.instance_number)
    ds.PatientOrientation = ""
    ds.ContentDate = ""
    ds.ContentTime = ""
    ds.ImageType = ["DERIVED", "PRIMARY"]
    if o.burned_in_annotation is not None:
        ds.BurnedInAnnotation = "YES" if o.burned_in_annotation else "NO"


def _image(ds: Dataset, rows: int, cols: int, rgb: bool, spacing, n_frames: int, frame_time_ms) -> None:
    """Image Pixel and US Image (calibration as SequenceOfUltrasoundRegions, as scanners write it), and for a cine
    Multi-frame + Cine."""
    multiframe = frame_time_ms is not None
    # Image Pixel + US Image
    ds.SamplesPerPixel = 3 if rgb else 1
    ds.PhotometricInterpretation = "RGB" if rgb else "MONOCHROME2"
    if rgb:
        ds.PlanarConfiguration = 0
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    if spacing is not None:
        ar = _aspect_ratio(spacing)
        if ar is not None:
            ds.PixelAspectRatio = ar
        ds.SequenceOfUltrasoundRegions = DicomSequence([_region(rows, cols, spacing)])
    # Multi-frame + Cine
    if multiframe:
        ds.NumberOfFrames = n_frames
        ds.FrameIncrementPointer = Tag("FrameTime")
        ds.FrameTime = f"{float(frame_time_ms):.6g}"
        ds.RecommendedDisplayFrameRate = max(1, int(round(1000.0 / float(frame_time_ms))))
        ds.CineRate = ds.RecommendedDisplayFrameRate


def _build(pixels: np.ndarray, out_path: Path, pixel_spacing_mm: Optional[Sequence[float]],
           frame_time_ms: Optional[float], o: UsWrapOptions, default_description: str) -> Path:
    """``frame_time_ms`` None: Ultrasound Image Storage (one frame); else US Multi-frame with Cine."""
    # pixels: (F, H, W) or (F, H, W, 3), uint8
    n_frames, rows, cols = pixels.shape[:3]
    rgb = pixels.ndim == 4
    spacing = None
    if pixel_spacing_mm is not None:
        spacing = (float(pixel_spacing_mm[0]), float(pixel_spacing_mm[1]))
        if not all(np.isfinite(spacing)) or min(spacing) <= 0:
            raise InputError(out_path, f"pixel spacing must be two positive numbers (row, col) in mm, "
                                       f"got {pixel_spacing_mm!r}")
    multiframe = frame_time_ms is not None
    seed_uid = o.seed_uid
    sop_class = US_MULTIFRAME_IMAGE_STORAGE if multiframe else US_IMAGE_STORAGE
    sop_uid = _uid(seed_uid, "sop")

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset(str(out_path), {}, file_meta=meta, preamble=b"\0" * 128)

    _identity(ds, sop_class, sop_uid, o, default_description)
    _image(ds, rows, cols, rgb, spacing, n_frames, frame_time_ms)
    data = pixels.tobytes() if multiframe else pixels[0].tobytes()
    if len(data) % 2:
        data += b"\0"  # DICOM values have even length
    ds.add_new(0x7FE00010, "OB", data)  # OB: 8-bit native pixel data

    out_path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out_path, enforce_file_format=True)
    return out_path


def wrap_as_us_dicom(image: np.ndarray, out_path: str | Path, pixel_spacing_mm: Optional[Sequence[float]] = None,
                     options: Optional[UsWrapOptions] = None) -> Path:
    """Write one H×W (MONOCHROME2) or H×W×3 (RGB, channel order R,G,B) uint8 image as Ultrasound Image
    Storage, explicit VR little endian.

    ``pixel_spacing_mm`` (row, col) goes into one SequenceOfUltrasoundRegions item covering the image
    (cm, 2D tissue). Patient, UIDs and descriptions: :class:`UsWrapOptions`.
    """
    out_path = Path(out_path)
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)) or min(arr.shape[:2]) < 1:
        raise InputError(out_path, f"image must be HxW or HxWx3, got shape {arr.shape}")
    arr = _as_uint8(arr, out_path, "image")
    return _build(arr[None], out_path, pixel_spacing_mm, None, options or UsWrapOptions(), "sonoseg sample")


def wrap_as_us_cine(frames: np.ndarray, out_path: str | Path, frame_time_ms: float = 33.3,
                    pixel_spacing_mm: Optional[Sequence[float]] = None, options: Optional[UsWrapOptions] = None) -> Path:
    """Write an F×H×W (or F×H×W×3) uint8 frame stack as Ultrasound Multi-frame Image Storage with a
    Cine module (FrameTime = ``frame_time_ms``, FrameIncrementPointer -> FrameTime). Other arguments
    as :func:`wrap_as_us_dicom`."""
    out_path = Path(out_path)
    arr = np.asarray(frames)
    if arr.ndim == 4 and arr.shape[3] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 3 or (arr.ndim == 4 and arr.shape[3] == 3)) or min(arr.shape[:3]) < 1:
        raise InputError(out_path, f"frames must be FxHxW or FxHxWx3, got shape {arr.shape}")
    if not (np.isfinite(frame_time_ms) and frame_time_ms > 0):
        raise InputError(out_path, f"frame time must be positive, got {frame_time_ms!r}")
    arr = _as_uint8(arr, out_path, "frames")
    return _build(arr, out_path, pixel_spacing_mm, float(frame_time_ms), options or UsWrapOptions(),
                  "sonoseg sample cine")
