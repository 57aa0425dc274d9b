"""The source image of a derived DICOM object (the SEG, the overlay capture): reading its header, the
metadata copy a derived object may take from it, its frames, its instance number and its pixel measures.

Privacy: highdicom copies the Patient and Study modules from the source (required for the derived object to
attach to the study). Before that, the source header is reduced to what the IODs require: Type 3 patient /
study attributes (other IDs, birth time, age, weight, comments, physicians...) and the optional Patient
Study / Clinical Trial modules are not copied, nor institution / station names and device serial
numbers (which highdicom would put in ContributingEquipmentSequence). Nothing here logs header values.

Pixel measures, for a source without a frame of reference: its calibration (PixelSpacing, or the ultrasound
region calibration sonoseg measures with, :func:`sonoseg.io.dicom.calibration`); ImagerPixelSpacing (detector
plane) is not a spacing in the patient. Slice Thickness is the source's, else :data:`NOMINAL_SLICE_THICKNESS_MM`
(see :mod:`sonoseg.outputs.dicom_seg` for why one is written at all).
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Optional, Union

import highdicom as hd
import pydicom
from pydicom.dataset import Dataset

from sonoseg.errors import InputError
from sonoseg.outputs.seg_legacy import current_form

SourceLike = Union[str, Path, Dataset]

# Patient / study attributes kept from the source: Type 1/2 (+1C/2C) of the Patient and General Study
# modules plus the de-identification flags and the study description. Everything else is dropped.
_KEEP_EXTRA = {"PatientIdentityRemoved", "DeidentificationMethod", "DeidentificationMethodCodeSequence",
               "StudyDescription"}
_DROP_MODULES = ("patient-study", "clinical-trial-subject", "clinical-trial-study")
# highdicom records the source's equipment in ContributingEquipmentSequence: keep make/model/software,
# not where or on which unit the patient was scanned.
_DROP_EQUIPMENT = {"InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName",
                   "InstitutionalDepartmentTypeCodeSequence", "StationName", "DeviceSerialNumber"}
NOMINAL_SLICE_THICKNESS_MM = 1.0  # see the module doc (Pixel spacing)


@lru_cache(maxsize=1)
def _identifying_keywords() -> frozenset[str]:
    from highdicom._standard_utils import get_module_attribute_map  # noqa: PLC0415 (private, pinned)

    amap = get_module_attribute_map()
    drop = set()
    for module in ("patient", "general-study"):
        drop |= {a["keyword"] for a in amap[module] if not a["path"] and a["type"] == "3"}
    for module in _DROP_MODULES:
        drop |= {a["keyword"] for a in amap[module] if not a["path"]}
    return frozenset((drop - _KEEP_EXTRA) | _DROP_EQUIPMENT)


_REQUIRED_EMPTY_OK = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                      "AccessionNumber", "StudyID", "ReferringPhysicianName")


def read_source(src: SourceLike) -> tuple[Dataset, str]:
    if isinstance(src, Dataset):
        return src, str(getattr(src, "filename", None) or "<dataset>")
    path = Path(src)
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except Exception as exc:  # pydicom raises many types for non-DICOM input
        raise InputError(path, f"not a readable DICOM file ({type(exc).__name__})") from None
    return ds, str(path)


def source_proxy(ds: Dataset, name: str, no_geometry: bool = False) -> Dataset:
    """Metadata-only copy of the source, reduced to what a derived object may copy (see module doc). Without a
    frame of reference the pixel measures are sonoseg's (:func:`pixel_measures_for`), never highdicom's
    copy of PixelSpacing without SliceThickness, which highdicom could not read back."""
    for kw in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Rows", "Columns"):
        if kw not in ds:
            raise InputError(name, f"source image has no {kw}")
    drop = _identifying_keywords()
    proxy = Dataset()
    if no_geometry:
        drop = drop | {"PixelSpacing", "SliceThickness", "SpacingBetweenSlices"}
    for elem in ds:
        if elem.tag.group in (0x7FE0, 0x0002) or elem.keyword in drop:
            continue
        proxy.add(copy.copy(current_form(elem)))  # shallow: the caller's dataset is never modified
    for kw in _REQUIRED_EMPTY_OK:  # Type 2 in both IODs: present, possibly empty
        if kw not in proxy:
            setattr(proxy, kw, "")
    if "Modality" not in proxy:
        proxy.Modality = "US"
    return proxy


def pixel_measures_for(ds: Dataset) -> Optional[hd.PixelMeasuresSequence]:
    """The SEG's PixelMeasuresSequence for a source without a frame of reference (see the module doc),
    or None when the source has no usable calibration."""
    import math

    from sonoseg.io.dicom import calibration

    spacing, source, _ = calibration(ds)
    if spacing is None or source not in ("PixelSpacing", "SequenceOfUltrasoundRegions"):
        return None
    try:
        thickness = float(ds.get("SliceThickness") or 0)
    except (TypeError, ValueError):
        thickness = 0.0
    if not (math.isfinite(thickness) and thickness > 0):
        thickness = NOMINAL_SLICE_THICKNESS_MM
    return hd.PixelMeasuresSequence(pixel_spacing=[float(v) for v in spacing], slice_thickness=thickness)


def frames_of(ds: Dataset) -> int:
    try:
        return max(int(ds.get("NumberOfFrames", 1) or 1), 1)
    except (TypeError, ValueError):
        return 1


def source_instance_number(ds: Dataset) -> int:
    try:
        n = int(ds.get("InstanceNumber") or 1)
    except (TypeError, ValueError):
        return 1
    return n if 0 < n < 2**31 else 1
