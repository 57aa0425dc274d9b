"""One entry point per question (metadata? pixels? frames?) whatever the file format."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from sonoseg.errors import InputError
from sonoseg.io.detect import detect_format
from sonoseg.io.types import ImageMeta, LoadedImage


def read_meta(path: str | Path) -> ImageMeta:
    """Header-only metadata (no pixel decoding for DICOM/NIfTI/most images)."""
    fmt = detect_format(path)
    if fmt == "dicom":
        from sonoseg.io.dicom import read_dicom_meta

        return read_dicom_meta(path)
    if fmt == "nifti":
        from sonoseg.io.nifti import read_nifti_meta

        return read_nifti_meta(path)
    from sonoseg.io.images import read_image_meta

    return read_image_meta(path)


def load_image(path: str | Path, voi: bool = True) -> LoadedImage:
    """Decode a whole file. DICOM: display-ready (rescale, VOI LUT/window when ``voi``, MONOCHROME1
    inverted, colour -> RGB); uint8/uint16 kept unless a value transform applies (then float32)."""
    fmt = detect_format(path)
    if fmt == "dicom":
        from sonoseg.io.dicom import load_dicom

        return load_dicom(path, voi=voi)
    if fmt == "nifti":
        from sonoseg.io.nifti import load_nifti_image

        return load_nifti_image(path)
    from sonoseg.io.images import load_image_file

    return load_image_file(path)


def _nifti_slices(path: Path) -> Iterator[np.ndarray]:
    from sonoseg.io.nifti import open_nifti

    img = open_nifti(path)
    if len(img.shape) > 3:
        raise InputError(path, f"iter_frames supports 2D/3D NIfTI only, got shape {tuple(img.shape)}")
    if len(img.shape) == 2:
        yield np.asarray(img.dataobj).T
        return
    for k in range(img.shape[2]):
        yield np.asarray(img.dataobj[:, :, k]).T  # proxy slicing reads one slice: rows=y, cols=x


def iter_frames(path: str | Path, voi: bool = True) -> Iterator[np.ndarray]:
    """Frames one at a time (HxW or HxWx3): a 2D image gives one, a cine each of its frames (decoded
    lazily, never all at once), a NIfTI volume each z slice."""
    fmt = detect_format(path)
    if fmt == "dicom":
        from sonoseg.io.dicom import iter_dicom_frames

        yield from iter_dicom_frames(path, voi=voi)
    elif fmt == "nifti":
        yield from _nifti_slices(Path(path))
    else:
        from sonoseg.io.images import iter_image_frames

        yield from iter_image_frames(path)
