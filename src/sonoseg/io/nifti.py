"""NIfTI through nibabel. ``Volume`` arrays are [z, y, x] (reversed nibabel axes) while the affine stays
the NIfTI voxel(i=x, j=y, k=z) -> RAS+ mm mapping, so nothing geometric is lost or re-derived."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from sonoseg.errors import InputError
from sonoseg.io.types import ImageMeta, LoadedImage, Volume


def open_nifti(path: str | Path) -> nib.Nifti1Image:
    """The NIfTI header of ``path`` (voxels not read yet), its declared size checked against the memory budget;
    InputError with the reason for a missing, unreadable, non-NIfTI or empty file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "no such file")
    try:
        img = nib.load(str(p))
    except Exception as exc:  # noqa: BLE001 - nibabel raises ImageFileError, EOFError, zlib errors...
        raise InputError(p, f"unreadable NIfTI ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(p, f"not a NIfTI image ({type(img).__name__})")
    if any(int(s) == 0 for s in img.shape):
        raise InputError(p, f"empty NIfTI volume (shape {tuple(img.shape)})")
    from sonoseg.io.budget import check_declared

    shape = [int(s) for s in img.shape] + [1, 1]
    frames = int(np.prod(shape[2:], dtype=np.int64))
    check_declared(p, shape[1], shape[0], frames, 1)  # declared size, before any voxel is read
    return img


def _affine(img) -> np.ndarray:
    """sform if set, else qform, else nibabel's fallback (img.affine already encodes that order)."""
    return np.asarray(img.affine, dtype=np.float64)


def _meta(path: Path, img, affine: np.ndarray) -> ImageMeta:
    shape = tuple(int(s) for s in img.shape)
    zooms = [float(z) for z in img.header.get_zooms()[:3]] + [1.0] * (3 - min(len(shape), 3))
    return ImageMeta(
        path=str(path),
        format="nifti",
        rows=shape[1] if len(shape) > 1 else 1,
        columns=shape[0],
        frames=shape[2] if len(shape) > 2 else 1,
        samples_per_pixel=1,
        photometric="MONOCHROME2",
        bits_stored=int(img.get_data_dtype().itemsize * 8),
        pixel_spacing_mm=(zooms[1], zooms[0]),
        spacing_source="NIfTI header",
        affine=affine.tolist(),
    )


def read_nifti_meta(path: str | Path) -> ImageMeta:
    img = open_nifti(path)
    return _meta(Path(path), img, _affine(img))


def _data(path: Path, img) -> np.ndarray:
    try:
        # dataobj applies scl_slope/inter only when set (float result), else keeps the stored dtype
        return np.asanyarray(img.dataobj)
    except Exception as exc:  # noqa: BLE001 - truncated / corrupt payload
        raise InputError(path, f"cannot read NIfTI voxel data ({type(exc).__name__}: {exc})") from exc


def load_nifti_image(path: str | Path) -> LoadedImage:
    """The array exactly as nibabel gives it ([x, y, z, ...]); geometry in meta.affine."""
    p = Path(path)
    img = open_nifti(p)
    return LoadedImage(pixels=_data(p, img), meta=_meta(p, img, _affine(img)))


def read_nifti(path: str | Path) -> Volume:
    """3D (or 2D, promoted to one slice) NIfTI -> Volume with array [z, y, x]."""
    p = Path(path)
    img = open_nifti(p)
    data = _data(p, img)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim != 3:
        raise InputError(p, f"expected a 3D volume, got shape {tuple(data.shape)}")
    affine = _affine(img)
    spacing_xyz = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    return Volume(
        array=np.ascontiguousarray(data.transpose(2, 1, 0)),
        spacing=(float(spacing_xyz[2]), float(spacing_xyz[1]), float(spacing_xyz[0])),
        affine=affine,
        meta=_meta(p, img, affine),
    )


def write_nifti(volume_or_array: Volume | np.ndarray, path: str | Path, affine: np.ndarray | None = None) -> Path:
    """Write a Volume (or an array in the same [z, y, x] / [y, x] order) as NIfTI-1.

    ``affine`` overrides the Volume's; for a bare array without one, the identity is used.
    sform and qform are both set (code 1, scanner) so every reader agrees on the geometry.
    """
    p = Path(path)
    if isinstance(volume_or_array, Volume):
        data = volume_or_array.array
        aff = volume_or_array.affine if affine is None else affine
    else:
        data = np.asarray(volume_or_array)
        aff = np.eye(4) if affine is None else affine
    if data.ndim not in (2, 3):
        raise ValueError(f"write_nifti expects a 2D or 3D array, got shape {data.shape}")
    if data.dtype == np.bool_:
        data = data.astype(np.uint8)
    if data.dtype == np.float16:
        data = data.astype(np.float32)
    aff = np.asarray(aff, dtype=np.float64)
    img = nib.Nifti1Image(np.ascontiguousarray(data.T), aff)
    img.set_sform(aff, code=1)
    img.set_qform(aff, code=1)
    img.header.set_xyzt_units("mm")
    p.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(p))
    return p
