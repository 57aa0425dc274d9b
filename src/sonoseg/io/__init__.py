"""Ingest: DICOM (pydicom 3 + pylibjpeg/pyjpegls), NIfTI (nibabel), PNG/JPEG/TIFF/BMP (OpenCV).

Everything returns numpy arrays plus small dataclasses (io.types); bad inputs raise
sonoseg.errors.InputError(path, reason). Patient identifiers are never read into metadata or logs.
"""

from sonoseg.io.batch import inspect_paths, iter_images
from sonoseg.io.detect import detect_format, find_inputs
from sonoseg.io.dicom_write import dicom_series_to_nifti, nifti_to_dicom_series, write_dicom_series
from sonoseg.io.load import iter_frames, load_image, read_meta
from sonoseg.io.nifti import read_nifti, write_nifti
from sonoseg.io.series import load_series
from sonoseg.io.types import ImageMeta, LoadedImage, UltrasoundRegion, Volume

__all__ = [
    "ImageMeta",
    "LoadedImage",
    "UltrasoundRegion",
    "Volume",
    "detect_format",
    "dicom_series_to_nifti",
    "find_inputs",
    "inspect_paths",
    "iter_frames",
    "iter_images",
    "load_image",
    "load_series",
    "nifti_to_dicom_series",
    "read_meta",
    "read_nifti",
    "write_dicom_series",
    "write_nifti",
]
