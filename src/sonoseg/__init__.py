"""sonoseg: ultrasound studies (DICOM, NIfTI, images) -> validated segmentation masks and measurements."""

__version__ = "0.1.0"
