"""Images wrapped as ultrasound DICOM: round trip with pydicom, calibration, IOD attributes, SEG source."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from sonoseg.errors import InputError
from sonoseg.io.us_wrap import (
    SAMPLE_PATIENT_ID,
    SAMPLE_PATIENT_NAME,
    US_IMAGE_STORAGE,
    US_MULTIFRAME_IMAGE_STORAGE,
    UsWrapOptions,
    wrap_as_us_cine,
    wrap_as_us_dicom,
)


def spacing_from_regions(ds) -> tuple[float, float]:
    """Independent reading of the calibration: the single region, cm -> mm, (row, col)."""
    (reg,) = ds.SequenceOfUltrasoundRegions
    assert reg.PhysicalUnitsXDirection == 3 and reg.PhysicalUnitsYDirection == 3
    return reg.PhysicalDeltaY * 10.0, reg.PhysicalDeltaX * 10.0


@pytest.fixture
def gray():
    return np.random.default_rng(1).integers(0, 256, (72, 96), dtype=np.uint8)


def test_gray_round_trip_and_calibration(tmp_path, gray):
    p = wrap_as_us_dicom(gray, tmp_path / "a.dcm", pixel_spacing_mm=(0.2, 0.1))
    ds = pydicom.dcmread(p)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.SOPClassUID == US_IMAGE_STORAGE == ds.file_meta.MediaStorageSOPClassUID
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
    assert ds.Modality == "US" and ds.PhotometricInterpretation == "MONOCHROME2"
    assert (ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.BitsAllocated) == (72, 96, 1, 8)
    assert np.array_equal(ds.pixel_array, gray)
    assert spacing_from_regions(ds) == pytest.approx((0.2, 0.1))
    (reg,) = ds.SequenceOfUltrasoundRegions
    assert (reg.RegionSpatialFormat, reg.RegionDataType) == (1, 1)
    assert (reg.RegionLocationMinX0, reg.RegionLocationMinY0) == (0, 0)
    assert (reg.RegionLocationMaxX1, reg.RegionLocationMaxY1) == (95, 71)
    assert [int(v) for v in ds.PixelAspectRatio] == [2, 1]  # 1C: non-square pixels, no PixelSpacing
    assert "PixelSpacing" not in ds
    assert str(ds.PatientName) == SAMPLE_PATIENT_NAME and ds.PatientID == SAMPLE_PATIENT_ID
    assert ds.PatientIdentityRemoved == "YES"
    # Type 2 attributes of the US Image IOD are present (possibly empty)
    for kw in ("PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
               "AccessionNumber", "SeriesNumber", "Manufacturer", "InstanceNumber", "PatientOrientation",
               "ContentDate", "ContentTime", "ImageType"):
        assert kw in ds, kw
    assert "FrameOfReferenceUID" not in ds


def test_rgb_no_spacing(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, (33, 47, 3), dtype=np.uint8)  # odd byte count
    ds = pydicom.dcmread(wrap_as_us_dicom(rgb, tmp_path / "rgb.dcm"))
    assert ds.PhotometricInterpretation == "RGB" and ds.PlanarConfiguration == 0 and ds.SamplesPerPixel == 3
    assert np.array_equal(ds.pixel_array, rgb)
    assert "SequenceOfUltrasoundRegions" not in ds and "PixelAspectRatio" not in ds


def test_cine_round_trip(tmp_path):
    frames = np.random.default_rng(3).integers(0, 256, (5, 40, 56), dtype=np.uint8)
    p = wrap_as_us_cine(frames, tmp_path / "cine.dcm", frame_time_ms=40.0, pixel_spacing_mm=(0.15, 0.15))
    ds = pydicom.dcmread(p)
    assert ds.SOPClassUID == US_MULTIFRAME_IMAGE_STORAGE
    assert int(ds.NumberOfFrames) == 5
    assert ds.FrameIncrementPointer == pydicom.tag.Tag("FrameTime")
    assert float(ds.FrameTime) == pytest.approx(40.0)
    assert np.array_equal(ds.pixel_array, frames)
    assert spacing_from_regions(ds) == pytest.approx((0.15, 0.15))
    assert "PixelAspectRatio" not in ds


def test_seeded_uids_are_deterministic(tmp_path, gray):
    a = pydicom.dcmread(wrap_as_us_dicom(gray, tmp_path / "a.dcm", options=UsWrapOptions(seed_uid="busi-benign-1")))
    b = pydicom.dcmread(wrap_as_us_dicom(gray, tmp_path / "b.dcm", options=UsWrapOptions(seed_uid="busi-benign-1")))
    c = pydicom.dcmread(wrap_as_us_dicom(gray, tmp_path / "c.dcm", options=UsWrapOptions(seed_uid="busi-benign-2")))
    d = pydicom.dcmread(wrap_as_us_dicom(gray, tmp_path / "d.dcm"))
    uids = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
    assert all(a[k].value == b[k].value for k in uids)
    assert all(a[k].value != c[k].value for k in uids)
    assert all(a[k].value != d[k].value for k in uids)
    assert len({a.StudyInstanceUID, a.SeriesInstanceUID, a.SOPInstanceUID}) == 3
    assert (tmp_path / "a.dcm").read_bytes() == (tmp_path / "b.dcm").read_bytes()
    for k in uids:
        assert pydicom.uid.UID(a[k].value).is_valid


def test_study_grouping_frame_of_reference_and_named_patient(tmp_path, gray):
    study = pydicom.uid.generate_uid()
    for_uid = pydicom.uid.generate_uid()
    p = wrap_as_us_dicom(gray, tmp_path / "x.dcm", options=UsWrapOptions(
        frame_of_reference=for_uid, anonymous=False, patient_name="DOE^JANE", patient_id="X1", study_uid=study,
        instance_number=3))
    ds = pydicom.dcmread(p)
    assert ds.StudyInstanceUID == study and ds.FrameOfReferenceUID == for_uid and ds.InstanceNumber == 3
    assert str(ds.PatientName) == "DOE^JANE" and ds.PatientID == "X1" and "PatientIdentityRemoved" not in ds


def test_read_by_sonoseg_io(tmp_path, gray):
    io = pytest.importorskip("sonoseg.io")
    if not hasattr(io, "read_meta"):
        pytest.skip("sonoseg.io.read_meta not available yet")
    p = wrap_as_us_cine(np.stack([gray, gray[::-1]]), tmp_path / "c.dcm", pixel_spacing_mm=(0.3, 0.2))
    meta = io.read_meta(p)
    assert meta.pixel_spacing_mm == pytest.approx((0.3, 0.2))
    assert meta.frames == 2 and (meta.rows, meta.columns) == gray.shape


def test_accepted_as_seg_source(tmp_path, gray):
    from sonoseg.outputs.dicom_seg import read_dicom_seg, write_dicom_seg

    src = wrap_as_us_dicom(gray, tmp_path / "img.dcm", pixel_spacing_mm=(0.1, 0.1))
    mask = np.zeros(gray.shape, np.uint8)
    mask[10:40, 20:70] = 1
    seg = write_dicom_seg(src, mask, tmp_path / "img.seg.dcm")
    s = pydicom.dcmread(seg)
    assert s.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert s.StudyInstanceUID == pydicom.dcmread(src).StudyInstanceUID
    assert str(s.PatientName) == SAMPLE_PATIENT_NAME
    assert np.array_equal(read_dicom_seg(seg)[0], mask)

    frames = np.stack([gray, gray // 2, gray[::-1]])
    cine = wrap_as_us_cine(frames, tmp_path / "cine.dcm", pixel_spacing_mm=(0.1, 0.1))
    masks = np.zeros(frames.shape, np.uint8)
    masks[0, 5:20, 5:30] = 1
    masks[2, 30:60, 40:90] = 1
    seg = write_dicom_seg(cine, masks, tmp_path / "cine.seg.dcm")
    assert int(pydicom.dcmread(seg).NumberOfFrames) == 3
    assert np.array_equal(read_dicom_seg(seg), masks)


def test_bad_input(tmp_path):
    with pytest.raises(InputError, match="uint8"):
        wrap_as_us_dicom(np.zeros((8, 8), np.float32), tmp_path / "f.dcm")
    with pytest.raises(InputError, match="shape"):
        wrap_as_us_dicom(np.zeros((8, 8, 4), np.uint8), tmp_path / "rgba.dcm")
    with pytest.raises(InputError, match="spacing"):
        wrap_as_us_dicom(np.zeros((8, 8), np.uint8), tmp_path / "s.dcm", pixel_spacing_mm=(0, 0.1))
    with pytest.raises(InputError, match="frames"):
        wrap_as_us_cine(np.zeros((8, 8), np.uint8), tmp_path / "c.dcm")
    # small non-uint8 integer images are accepted and converted exactly
    ds = pydicom.dcmread(wrap_as_us_dicom(np.full((4, 6), 200, np.int64), tmp_path / "i.dcm"))
    assert ds.pixel_array.dtype == np.uint8 and int(ds.pixel_array.max()) == 200
