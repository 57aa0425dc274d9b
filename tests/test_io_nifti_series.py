"""NIfTI I/O, DICOM series -> volume (geometry sort, affine), and conversions both ways.

Geometry is checked against values computed here from first principles (DICOM Image Plane module:
P = IPP + col * dc * X + row * dr * Y; LPS -> RAS negates x and y), not against the code under test.
"""

from __future__ import annotations

import random
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from conftest import dicom_testfile
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from sonoseg.errors import InputError
from sonoseg.io import (
    Volume,
    dicom_series_to_nifti,
    iter_frames,
    load_image,
    load_series,
    nifti_to_dicom_series,
    read_meta,
    read_nifti,
    write_nifti,
)


def _rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _affine(m3: np.ndarray, origin) -> np.ndarray:
    a = np.eye(4)
    a[:3, :3] = m3
    a[:3, 3] = origin
    return a


AFFINES = {
    "ras": _affine(np.diag([0.7, 0.8, 2.5]), [10, -20, 30]),
    "las_radiological": _affine(np.diag([-0.7, 0.8, 2.5]), [50, -20, 30]),
    "oblique": _affine(_rotation(0.2, -0.35, 0.6) @ np.diag([0.6, 0.9, 3.0]), [-5.5, 12.25, 40]),
    "slice_shear_tilt": _affine(np.array([[0.7, 0, 0], [0, 0.8, 0.4], [0, 0, 2.5]]), [1, 2, 3]),
}


# ---------------------------------------------------------------- synthetic DICOM series


def _write_series(
    folder: Path,
    volume_zyx: np.ndarray,
    x_dir,
    y_dir,
    row_mm: float,
    col_mm: float,
    origin,
    step,
    shuffle: bool = True,
    positions: bool = True,
    intercept: float = 0.0,
) -> list[Path]:
    """Hand-made CT series; file names and InstanceNumbers deliberately carry no order."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    nz = volume_zyx.shape[0]
    names = [f"slice_{random.Random(k).randint(0, 10**6):07d}_{k}" for k in range(nz)]  # no extension
    inst = list(range(1, nz + 1))
    if shuffle:
        random.Random(7).shuffle(names)
        random.Random(8).shuffle(inst)
    paths = []
    for k in range(nz):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality = "CT"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.InstanceNumber = inst[k]
        if positions:
            ds.ImagePositionPatient = [float(v) for v in np.asarray(origin) + k * np.asarray(step)]
            ds.ImageOrientationPatient = [float(v) for v in list(x_dir) + list(y_dir)]
        ds.PixelSpacing = [row_mm, col_mm]
        ds.SliceThickness = float(np.linalg.norm(step))
        stored = (volume_zyx[k] - intercept).astype(np.uint16)
        ds.set_pixel_data(stored, "MONOCHROME2", 16)
        ds.RescaleSlope, ds.RescaleIntercept = 1, intercept
        p = folder / names[k]
        ds.save_as(p, enforce_file_format=True)
        paths.append(p)
    return paths


def _expected_ras(x_dir, y_dir, row_mm, col_mm, origin, step) -> np.ndarray:
    lps = np.eye(4)
    lps[:3, 0] = np.asarray(x_dir) * col_mm
    lps[:3, 1] = np.asarray(y_dir) * row_mm
    lps[:3, 2] = step
    lps[:3, 3] = origin
    return np.diag([-1.0, -1, 1, 1]) @ lps


def _oblique_geometry():
    r = _rotation(0.3, 0.1, -0.4)
    x_dir, y_dir = r[:, 0], r[:, 1]
    step = np.cross(x_dir, y_dir) * 2.0
    return x_dir, y_dir, 0.5, 0.75, np.array([-100.0, 50.0, 20.0]), step


def test_series_sorted_by_geometry_not_names(tmp_path):
    rng = np.random.default_rng(0)
    vol = rng.integers(-1024, 3000, size=(6, 12, 10)).astype(np.int32)
    x_dir, y_dir, row_mm, col_mm, origin, step = _oblique_geometry()
    _write_series(tmp_path / "ser", vol, x_dir, y_dir, row_mm, col_mm, origin, step, intercept=-1024)
    v = load_series(tmp_path / "ser")
    assert v.array.shape == (6, 12, 10)
    np.testing.assert_array_equal(v.array, vol)  # exact HU after RescaleIntercept
    assert np.issubdtype(v.array.dtype, np.integer)
    np.testing.assert_allclose(v.affine, _expected_ras(x_dir, y_dir, row_mm, col_mm, origin, step), atol=1e-6)
    assert v.spacing == pytest.approx((2.0, 0.5, 0.75))
    # voxel (x=3, y=5, z=4) lands where the DICOM Image Plane equation says, in RAS
    p_lps = origin + 4 * step + 3 * col_mm * x_dir + 5 * row_mm * y_dir
    np.testing.assert_allclose((v.affine @ [3, 5, 4, 1])[:3], p_lps * [-1, -1, 1], atol=1e-6)


def test_series_falls_back_to_instance_number(tmp_path, caplog):
    vol = np.arange(4 * 6 * 5, dtype=np.int32).reshape(4, 6, 5) * 7
    x_dir, y_dir, row_mm, col_mm, origin, step = _oblique_geometry()
    paths = _write_series(tmp_path / "s", vol, x_dir, y_dir, row_mm, col_mm, origin, step, shuffle=False, positions=False)
    # reverse the instance numbers: the volume must come back in instance order (i.e. reversed)
    for k, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        ds.InstanceNumber = len(paths) - k
        ds.save_as(p)
    v = load_series(tmp_path / "s")
    np.testing.assert_array_equal(v.array, vol[::-1])
    assert "InstanceNumber" in caplog.text


def test_real_series_ct5n():
    """pydicom's dicomdirtests CT5N: 5 extension-less CT slices, z descending with InstanceNumber."""
    folder = dicom_testfile("dicomdirtests/98892001/CT5N/2062").parent
    v = load_series(folder)
    slices = sorted((pydicom.dcmread(f) for f in folder.iterdir()), key=lambda d: int(d.InstanceNumber))
    assert v.array.shape == (5, 16, 16)
    for k, ds in enumerate(slices):
        ipp = np.array([float(x) for x in ds.ImagePositionPatient])
        np.testing.assert_allclose((v.affine @ [0, 0, k, 1])[:3], ipp * [-1, -1, 1], atol=1e-4)
        expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(v.array[k], expected)
    assert v.spacing[0] == pytest.approx(2.5, abs=1e-3)


def test_real_series_with_gap_is_refused():
    """dicomdirtests CT2: one slice 200 mm away from three contiguous ones."""
    folder = dicom_testfile("dicomdirtests/77654033/CT2/17106").parent
    with pytest.raises(InputError, match="slice gaps vary"):
        load_series(folder)


def test_series_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no DICOM files"):
        load_series(tmp_path / "empty")
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "readme.txt").write_text("hello")
    with pytest.raises(InputError, match="no DICOM files"):
        load_series(tmp_path / "txt")
    vol = np.zeros((3, 8, 8), np.int32)
    x_dir, y_dir, row_mm, col_mm, origin, step = _oblique_geometry()
    _write_series(tmp_path / "dup", vol, x_dir, y_dir, row_mm, col_mm, origin, step * 0)
    with pytest.raises(InputError, match="share one position"):
        load_series(tmp_path / "dup")
    with pytest.raises(InputError, match="different ImageOrientationPatient"):
        load_series(dicom_testfile("dicomdirtests/98892003/MR700/4467").parent)


def test_series_skips_bad_file(tmp_path, caplog):
    vol = np.arange(4 * 8 * 8, dtype=np.int32).reshape(4, 8, 8)
    x_dir, y_dir, row_mm, col_mm, origin, step = _oblique_geometry()
    _write_series(tmp_path / "s", vol, x_dir, y_dir, row_mm, col_mm, origin, step, shuffle=False)
    (tmp_path / "s" / "junk.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"garbage")
    v = load_series(tmp_path / "s")
    np.testing.assert_array_equal(v.array, vol)
    assert "junk.dcm" in caplog.text


def test_multiframe_file_as_volume():
    v = load_series(dicom_testfile("emri_small.dcm"))
    assert v.array.shape == (10, 64, 64) and v.array.dtype == np.uint16
    np.testing.assert_array_equal(v.array, load_image(dicom_testfile("emri_small.dcm")).pixels)


# ---------------------------------------------------------------- NIfTI


def test_read_nifti_axes_and_affine(tmp_path):
    data = np.random.default_rng(1).integers(0, 1000, size=(5, 7, 3)).astype(np.int16)  # x, y, z
    aff = AFFINES["oblique"]
    nib.save(nib.Nifti1Image(data, aff), tmp_path / "a.nii.gz")
    v = read_nifti(tmp_path / "a.nii.gz")
    assert v.array.shape == (3, 7, 5)
    np.testing.assert_array_equal(v.array, data.transpose(2, 1, 0))
    np.testing.assert_allclose(v.affine, aff, atol=1e-6)
    assert v.spacing == pytest.approx((3.0, 0.9, 0.6), abs=1e-5)
    li = load_image(tmp_path / "a.nii.gz")  # nibabel order for load_image
    np.testing.assert_array_equal(li.pixels, data)
    np.testing.assert_allclose(np.array(li.meta.affine), aff, atol=1e-6)
    meta = read_meta(tmp_path / "a.nii.gz")
    assert (meta.format, meta.columns, meta.rows, meta.frames) == ("nifti", 5, 7, 3)
    frames = list(iter_frames(tmp_path / "a.nii.gz"))
    assert len(frames) == 3 and frames[1].shape == (7, 5)
    np.testing.assert_array_equal(frames[1], data[:, :, 1].T)


def test_nifti_scaling_applied(tmp_path):
    img = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.eye(4))
    img.header.set_slope_inter(0.5, -3)
    nib.save(img, tmp_path / "s.nii")
    v = read_nifti(tmp_path / "s.nii")
    np.testing.assert_allclose(v.array, np.arange(24).reshape(2, 3, 4).transpose(2, 1, 0) * 0.5 - 3)


def test_write_nifti_volume_and_array(tmp_path):
    arr = np.random.default_rng(2).random((4, 6, 5)).astype(np.float32)
    vol = Volume(array=arr, spacing=(2.5, 0.8, 0.7), affine=AFFINES["ras"], meta=read_meta_stub())
    write_nifti(vol, tmp_path / "v.nii.gz")
    back = read_nifti(tmp_path / "v.nii.gz")
    np.testing.assert_array_equal(back.array, arr)
    np.testing.assert_allclose(back.affine, AFFINES["ras"], atol=1e-6)
    hdr = nib.load(tmp_path / "v.nii.gz").header
    assert int(hdr["sform_code"]) == 1 and int(hdr["qform_code"]) == 1
    mask = np.zeros((6, 5), dtype=bool)
    mask[2:4, 1:3] = True
    write_nifti(mask, tmp_path / "m.nii")
    loaded = nib.load(tmp_path / "m.nii")
    assert loaded.shape == (5, 6) and np.asanyarray(loaded.dataobj).T.sum() == 4


def read_meta_stub():
    from sonoseg.io import ImageMeta

    return ImageMeta(path="mem", format="nifti")


def test_bad_nifti(tmp_path):
    (tmp_path / "bad.nii.gz").write_bytes(b"\x1f\x8b" + b"not really gzip" * 10)
    with pytest.raises(InputError, match="NIfTI"):
        read_nifti(tmp_path / "bad.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2, 3), np.float32), np.eye(4)), tmp_path / "4d.nii")
    with pytest.raises(InputError, match="3D"):
        read_nifti(tmp_path / "4d.nii")


# ---------------------------------------------------------------- conversions


@pytest.mark.parametrize("name", sorted(AFFINES))
def test_nifti_dicom_nifti_round_trip(tmp_path, name):
    aff = AFFINES[name]
    data = np.random.default_rng(3).integers(-1024, 3072, size=(6, 5, 4)).astype(np.int16)
    nib.save(nib.Nifti1Image(data, aff), tmp_path / "in.nii.gz")
    paths = nifti_to_dicom_series(tmp_path / "in.nii.gz", tmp_path / "dcm")
    assert len(paths) == 4
    dicom_series_to_nifti(tmp_path / "dcm", tmp_path / "out.nii.gz")
    out = nib.load(tmp_path / "out.nii.gz")
    np.testing.assert_allclose(out.affine, aff, atol=1e-4)
    np.testing.assert_array_equal(np.asanyarray(out.dataobj), data)


def test_nifti_to_dicom_lps_and_validity(tmp_path):
    """RAS+ axis-aligned affine: DICOM must say IOP = [-1,0,0, 0,-1,0] and IPP = (-x, -y, z)."""
    aff = _affine(np.diag([0.5, 0.6, 2.0]), [10.0, 20.0, 30.0])
    data = np.random.default_rng(4).integers(0, 500, size=(4, 3, 3)).astype(np.uint16)
    nib.save(nib.Nifti1Image(data, aff), tmp_path / "a.nii")
    paths = nifti_to_dicom_series(tmp_path / "a.nii", tmp_path / "d", modality="CT")
    for k, p in enumerate(paths):
        assert p.read_bytes()[128:132] == b"DICM"
        ds = pydicom.dcmread(p)  # no force: a proper Part 10 file
        assert ds.SOPClassUID == CTImageStorage and ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        for kw in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "SOPInstanceUID", "KVP", "ImageType"):
            assert kw in ds
        assert ds.PatientName == "" and ds.PatientID == ""
        np.testing.assert_allclose([float(v) for v in ds.ImageOrientationPatient], [-1, 0, 0, 0, -1, 0], atol=1e-9)
        np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], [-10, -20, 30 + 2.0 * k], atol=1e-6)
        np.testing.assert_allclose([float(v) for v in ds.PixelSpacing], [0.6, 0.5])
        np.testing.assert_array_equal(ds.pixel_array, data[:, :, k].T)  # rows = y, columns = x


def test_float_volume_lossy_but_close(tmp_path):
    data = np.random.default_rng(5).normal(size=(5, 4, 3)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, AFFINES["ras"]), tmp_path / "f.nii.gz")
    nifti_to_dicom_series(tmp_path / "f.nii.gz", tmp_path / "d")
    v = load_series(tmp_path / "d")
    step = (data.max() - data.min()) / 65535
    np.testing.assert_allclose(v.array, data.transpose(2, 1, 0), atol=step)


def test_dicom_series_to_nifti_to_dicom(tmp_path):
    """Real-style CT series (HU via intercept) -> NIfTI -> DICOM: same geometry and voxels."""
    rng = np.random.default_rng(6)
    vol = rng.integers(-1024, 2000, size=(5, 9, 7)).astype(np.int32)
    x_dir, y_dir, row_mm, col_mm, origin, step = _oblique_geometry()
    _write_series(tmp_path / "src", vol, x_dir, y_dir, row_mm, col_mm, origin, step, intercept=-1024)
    dicom_series_to_nifti(tmp_path / "src", tmp_path / "mid.nii.gz")
    nifti_to_dicom_series(tmp_path / "mid.nii.gz", tmp_path / "dst", modality="CT")
    a, b = load_series(tmp_path / "src"), load_series(tmp_path / "dst")
    np.testing.assert_array_equal(b.array, vol)
    np.testing.assert_allclose(b.affine, a.affine, atol=1e-4)
    # slice-by-slice: the written positions are the original ones
    src_ipps = sorted(tuple(float(v) for v in pydicom.dcmread(p).ImagePositionPatient) for p in (tmp_path / "src").iterdir())
    dst_ipps = sorted(tuple(float(v) for v in pydicom.dcmread(p).ImagePositionPatient) for p in (tmp_path / "dst").iterdir())
    np.testing.assert_allclose(dst_ipps, src_ipps, atol=1e-4)


def test_conversion_refuses_bad_targets(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4)), tmp_path / "a.nii")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("x")
    with pytest.raises(InputError, match="not empty"):
        nifti_to_dicom_series(tmp_path / "a.nii", tmp_path / "busy")
    with pytest.raises(InputError, match=".nii"):
        dicom_series_to_nifti(dicom_testfile("emri_small.dcm"), tmp_path / "out.img")
    skew = _affine(np.array([[1.0, 0.5, 0], [0, 1, 0], [0, 0, 1]]), [0, 0, 0])  # in-plane shear
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), skew), tmp_path / "skew.nii")
    with pytest.raises(InputError, match="orthogonal"):
        nifti_to_dicom_series(tmp_path / "skew.nii", tmp_path / "skew")
