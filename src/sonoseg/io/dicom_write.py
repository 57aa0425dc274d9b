"""Volume -> DICOM series (one single-frame file per slice) with full Image Plane geometry.

IODs: CT Image Storage (modality CT), MR Image Storage (MR), otherwise Secondary Capture Image Storage
(modality OT) extended with the Image Plane attributes, which DICOM permits (Standard Extended SOP
Class) and which every volume reader uses. No patient data is written: identifiers stay empty.

Values: integer-valued volumes are stored exactly in 16 bits (int16/uint16, or uint16 plus an
integer RescaleIntercept when the range needs an offset). Only non-integral or wider-than-16-bit
data are scaled through RescaleSlope, which is lossy; a warning says so.
"""

from __future__ import annotations

import datetime as _dt
import logging
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from sonoseg.errors import InputError
from sonoseg.io.series import LPS_TO_RAS
from sonoseg.io.types import Volume

log = logging.getLogger(__name__)

_SOP = {"CT": CTImageStorage, "MR": MRImageStorage}
_ORTHO_TOL = 1e-4


def _ds(value: float) -> str:
    """DICOM DS is at most 16 characters: keep as many significant digits as fit."""
    for digits in range(16, 5, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    return f"{value:.6g}"


def _encode(array: np.ndarray) -> tuple[np.ndarray, float, float, bool]:
    """(stored int16/uint16 array, slope, intercept, exact)."""
    data = np.asarray(array)
    if data.dtype == np.bool_:
        data = data.astype(np.uint8)
    finite = np.isfinite(data) if data.dtype.kind == "f" else None
    if finite is not None and not finite.all():
        data = np.where(finite, data, 0)
    lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
    integral = data.dtype.kind in "iub" or bool(np.all(np.mod(data, 1) == 0))
    if integral:
        if lo >= 0 and hi <= 65535:
            return data.astype(np.uint16), 1.0, 0.0, True
        if lo >= -32768 and hi <= 32767:
            return data.astype(np.int16), 1.0, 0.0, True
        if hi - lo <= 65535:
            return (data - lo).astype(np.uint16), 1.0, lo, True
    slope = (hi - lo) / 65535.0 if hi > lo else 1.0
    stored = np.rint((data.astype(np.float64) - lo) / slope).clip(0, 65535).astype(np.uint16)
    return stored, slope, lo, False


def _plane(affine_ras: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray, float, float, np.ndarray, np.ndarray]:
    lps = LPS_TO_RAS @ np.asarray(affine_ras, dtype=np.float64)
    col_vec, row_vec = lps[:3, 0], lps[:3, 1]  # along x (columns) and along y (rows)
    col_mm, row_mm = float(np.linalg.norm(col_vec)), float(np.linalg.norm(row_vec))
    if col_mm <= 0 or row_mm <= 0 or np.linalg.norm(lps[:3, 2]) <= 0:
        raise InputError(where, "affine has a zero-length axis")
    x_dir, y_dir = col_vec / col_mm, row_vec / row_mm
    if abs(float(x_dir @ y_dir)) > _ORTHO_TOL:
        raise InputError(where, "in-plane axes are not orthogonal: DICOM ImageOrientationPatient cannot represent this affine")
    return x_dir, y_dir, row_mm, col_mm, lps[:3, 2], lps[:3, 3]


def write_dicom_series(
    volume: Volume,
    out_dir: str | Path,
    modality: str = "OT",
    series_description: str = "sonoseg conversion",
    overwrite: bool = False,
    prefix: str = "IM",
) -> list[Path]:
    """Write ``volume`` (array [z, y, x], RAS affine) as ``out_dir/IM0001.dcm ...``; returns the paths."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(out, "output exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(out, "output folder is not empty (use overwrite=True)")
    out.mkdir(parents=True, exist_ok=True)
    array = np.asarray(volume.array)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise InputError(str(volume.meta.path), f"expected a 3D scalar volume, got shape {array.shape}")
    x_dir, y_dir, row_mm, col_mm, step, origin = _plane(volume.affine, str(volume.meta.path))
    normal = np.cross(x_dir, y_dir)
    stored, slope, intercept, exact = _encode(array)
    if not exact:
        log.warning("%s: non-integer or >16-bit values stored with RescaleSlope %.6g (lossy)", volume.meta.path, slope)

    modality = modality.upper()
    sop_class = _SOP.get(modality, SecondaryCaptureImageStorage)
    study_uid, series_uid, for_uid = generate_uid(), generate_uid(), generate_uid()
    now = _dt.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    thickness = float(np.linalg.norm(step))
    paths = []
    for k in range(stored.shape[0]):
        position = origin + k * step
        sop_uid = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        meta.ImplementationVersionName = "SONOSEG_01"
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
        # Patient / study: type 2, deliberately empty (no identifiers are ever written)
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "", "", "", ""
        ds.StudyInstanceUID, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = study_uid, "", "", ""
        ds.StudyDate, ds.StudyTime, ds.ContentDate, ds.ContentTime = date, time, date, time
        ds.Modality = modality if modality in _SOP else "OT"
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = series_uid, 1, series_description
        ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = for_uid, ""
        ds.Manufacturer = "sonoseg"
        ds.InstanceNumber = k + 1
        ds.ImageType = ["DERIVED", "SECONDARY"] + (["AXIAL"] if modality == "CT" else [])
        if sop_class == SecondaryCaptureImageStorage:
            ds.ConversionType = "WSD"
        if modality == "CT":
            ds.KVP, ds.AcquisitionNumber = "", ""
        if modality == "MR":
            ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "RM", "NONE", ""
            ds.MRAcquisitionType, ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength = "3D", "", "", ""
        # Image Plane
        ds.PixelSpacing = [_ds(row_mm), _ds(col_mm)]
        ds.ImageOrientationPatient = [_ds(v) for v in np.concatenate([x_dir, y_dir])]
        ds.ImagePositionPatient = [_ds(v) for v in position]
        ds.SliceThickness = _ds(thickness)
        ds.SpacingBetweenSlices = _ds(thickness)
        ds.SliceLocation = _ds(float(position @ normal))
        # Pixels (+ modality LUT)
        ds.set_pixel_data(np.ascontiguousarray(stored[k]), "MONOCHROME2", 16, generate_instance_uid=False)
        ds.RescaleIntercept, ds.RescaleSlope = _ds(intercept), _ds(slope)
        ds.RescaleType = "HU" if modality == "CT" else "US"
        path = out / f"{prefix}{k + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def dicom_series_to_nifti(folder: str | Path, out: str | Path, series_uid: str | None = None) -> Path:
    """Folder of slices (or one multi-frame file) -> .nii / .nii.gz, geometry kept."""
    from sonoseg.io.nifti import write_nifti
    from sonoseg.io.series import load_series

    out = Path(out)
    if not (out.name.endswith(".nii") or out.name.endswith(".nii.gz")):
        raise InputError(out, "output must end in .nii or .nii.gz")
    return write_nifti(load_series(folder, series_uid=series_uid), out)


def nifti_to_dicom_series(
    nii: str | Path,
    out_dir: str | Path,
    modality: str = "OT",
    series_description: str = "sonoseg conversion",
    overwrite: bool = False,
) -> list[Path]:
    """.nii / .nii.gz -> folder of single-frame DICOM slices, geometry kept (RAS -> LPS)."""
    from sonoseg.io.nifti import read_nifti

    return write_dicom_series(read_nifti(nii), out_dir, modality=modality, series_description=series_description, overwrite=overwrite)
