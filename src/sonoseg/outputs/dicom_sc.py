"""The overlay picture as a DICOM Secondary Capture, for PACS viewers that cannot show a SEG.

Off by default (``predict --overlay-sc``, ``listen --overlay-sc``): a SEG is the result a viewer can
measure on and a program can read; the capture is only a picture of it (the source frame with the
mask, its contour and the overlay's captions burned in), in its own series "sonoseg overlay (not for
diagnosis)".

* highdicom's SCImage builds it, with the patient / study attributes reduced as for the SEG
  (:func:`sonoseg.outputs.dicom_source.source_proxy`). highdicom insists on a patient orientation for a patient
  image; ultrasound has none, so the capture states it as the source does (usually empty = unknown,
  Type 2C) rather than an invented one.
* SourceImageSequence references the image (and for a cine the frame) it was drawn on; the pixel
  spacing is the SEG's (:func:`sonoseg.outputs.dicom_source.pixel_measures_for`); Laterality and Burned In
  Annotation are the source's (a screen capture with the patient's name burned in stays flagged).
* Manufacturer / Manufacturer's Model Name ``sonoseg`` / ``sonoseg overlay`` (:func:`is_overlay_capture`):
  a listener never segments a capture sent back to it (:mod:`sonoseg.pacs.segment`); sonoseg's other
  DICOM writers (samples, converted series) are images to segment and carry another model name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from sonoseg import __version__
from sonoseg.errors import InputError
from sonoseg.outputs.dicom_source import (SourceLike, frames_of, pixel_measures_for, read_source,
                                          source_instance_number, source_proxy)

SERIES_DESCRIPTION = "sonoseg overlay (not for diagnosis)"
MODEL_NAME = "sonoseg overlay"
_SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
_PLACEHOLDER_ORIENTATION = ("P", "F")  # only to pass highdicom's check; replaced by the source's value


def write_overlay_sc(source: SourceLike, rgb: np.ndarray, out_path: Union[str, Path], *,
                     frame_index: Optional[int] = None, series_instance_uid: Optional[str] = None,
                     instance_number: Optional[int] = None, algorithm_version: str = __version__,
                     series_number: int = 901) -> Path:
    """Write ``rgb`` (H x W x 3 uint8, the size of the source image) as a Secondary Capture in the
    source's study; ``frame_index``: the 0-based source frame it shows (cine)."""
    ds, name = read_source(source)
    out_path = Path(out_path)
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise InputError(name, f"overlay must be an H x W x 3 uint8 picture, got {arr.shape} {arr.dtype}")
    if arr.shape[:2] != (int(ds.Rows), int(ds.Columns)):
        raise InputError(name, f"overlay is {arr.shape[0]}x{arr.shape[1]} but the image is {ds.Rows}x{ds.Columns}")
    n_src = frames_of(ds)
    if frame_index is not None and not 0 <= int(frame_index) < n_src:
        raise InputError(name, f"frame index {frame_index} outside 0..{n_src - 1}")
    pm = pixel_measures_for(ds)
    proxy = source_proxy(ds, name, no_geometry=True)
    try:
        sc = hd.sc.SCImage.from_ref_dataset(
            proxy, arr, hd.PhotometricInterpretationValues.RGB, 8, hd.CoordinateSystemNames.PATIENT,
            series_instance_uid=series_instance_uid or generate_uid(), series_number=int(series_number),
            sop_instance_uid=generate_uid(),
            instance_number=int(instance_number) if instance_number is not None else source_instance_number(ds),
            manufacturer="sonoseg", patient_orientation=_PLACEHOLDER_ORIENTATION,
            pixel_spacing=tuple(float(v) for v in pm[0].PixelSpacing) if pm is not None else None,
            transfer_syntax_uid="1.2.840.10008.1.2.1",
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise InputError(name, f"cannot build the overlay capture: {str(exc).splitlines()[0][:200]}") from None
    sc.PatientOrientation = ds.get("PatientOrientation") or ""
    sc.Laterality = ds.get("Laterality") or ""  # General Series, Type 2C (the breast is a paired organ)
    if ds.get("BurnedInAnnotation"):
        sc.BurnedInAnnotation = ds.BurnedInAnnotation
    sc.SeriesDescription = SERIES_DESCRIPTION
    sc.ManufacturerModelName = MODEL_NAME
    sc.SoftwareVersions = str(algorithm_version)
    sc.DerivationDescription = (f"sonoseg {algorithm_version}: segmentation mask, contour and findings drawn on the "
                                "source image; not for diagnosis")[:1024]
    ref = Dataset()
    ref.ReferencedSOPClassUID = ds.SOPClassUID
    ref.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    if n_src > 1 and frame_index is not None:
        ref.ReferencedFrameNumber = int(frame_index) + 1
    sc.SourceImageSequence = [ref]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    sc.save_as(out_path)
    return out_path


def is_overlay_capture(ds: Dataset) -> bool:
    """True for a capture written here (header with SOPClassUID, Manufacturer, ManufacturerModelName)."""
    return (str(ds.get("SOPClassUID", "")) == _SC_STORAGE and str(ds.get("Manufacturer", "")) == "sonoseg"
            and str(ds.get("ManufacturerModelName", "")) == MODEL_NAME)
