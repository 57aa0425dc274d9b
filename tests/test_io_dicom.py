"""DICOM ingest against real pydicom / pydicom-data files, checked against independent decodes:
raw PixelData bytes parsed with numpy, LUTs applied by hand, compressed vs uncompressed twins."""

from __future__ import annotations

import json
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import dicom_testfile
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundImageStorage, generate_uid

from sonoseg.errors import InputError
from sonoseg.io import iter_frames, load_image, read_meta
from sonoseg.io.us_regions import parse_us_regions, spacing_from_regions


def _raw(name: str, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Uncompressed PixelData straight from the bytes, no pydicom decoding involved."""
    ds = pydicom.dcmread(dicom_testfile(name))
    return np.frombuffer(ds.PixelData, dtype=dtype)[: int(np.prod(shape))].reshape(shape)


# ---------------------------------------------------------------- colour / photometric


def test_rgb_uncompressed_matches_raw_bytes():
    img = load_image(dicom_testfile("US1_UNCR.dcm"))
    assert img.pixels.shape == (480, 640, 3) and img.pixels.dtype == np.uint8
    np.testing.assert_array_equal(img.pixels, _raw("US1_UNCR.dcm", "u1", (480, 640, 3)))
    assert img.meta.modality == "US" and img.meta.photometric == "RGB" and img.meta.frames == 1


@pytest.mark.parametrize(
    "compressed, reference",
    [
        ("US1_J2KR.dcm", "US1_UNCR.dcm"),  # JPEG 2000 lossless, YBR_RCT -> RGB
        ("OBXXXX1A_rle.dcm", "OBXXXX1A.dcm"),  # RLE, palette
        ("OBXXXX1A_expb.dcm", "OBXXXX1A.dcm"),  # big endian, 16-bit palette LUT
        ("OBXXXX1A_rle_2frame.dcm", "OBXXXX1A_2frame.dcm"),
        ("OBXXXX1A_expb_2frame.dcm", "OBXXXX1A_2frame.dcm"),
        ("emri_small_RLE.dcm", "emri_small.dcm"),  # 10-frame MR, RLE
        ("emri_small_big_endian.dcm", "emri_small.dcm"),
        ("emri_small_jpeg_ls_lossless.dcm", "emri_small.dcm"),  # JPEG-LS (pyjpegls)
        ("emri_small_jpeg_2k_lossless.dcm", "emri_small.dcm"),
        ("MR_small_implicit.dcm", "MR_small.dcm"),  # implicit VR little endian
        ("MR_small_expb.dcm", "MR_small.dcm"),  # explicit VR big endian
        ("MR_small_RLE.dcm", "MR_small.dcm"),
        ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm"),
        ("SC_rgb_jpeg_gdcm.dcm", "SC_rgb.dcm"),  # JPEG lossless (process 14), RGB
        ("SC_rgb_rle.dcm", "SC_rgb.dcm"),
        ("SC_rgb_expb.dcm", "SC_rgb.dcm"),
        ("SC_rgb_rle_2frame.dcm", "SC_rgb_2frame.dcm"),
    ],
)
def test_lossless_variants_decode_identically(compressed, reference):
    a, b = load_image(dicom_testfile(compressed)), load_image(dicom_testfile(reference))
    assert a.pixels.shape == b.pixels.shape and a.pixels.dtype == b.pixels.dtype
    np.testing.assert_array_equal(a.pixels, b.pixels)
    assert a.meta.transfer_syntax != b.meta.transfer_syntax


def test_j2k_lossy_matches_reference_and_is_close_to_original():
    """US1_UNCI is the reference decode of the lossy US1_J2KI; US1_UNCR is the original image."""
    lossy = load_image(dicom_testfile("US1_J2KI.dcm")).pixels
    np.testing.assert_array_equal(lossy, load_image(dicom_testfile("US1_UNCI.dcm")).pixels)
    orig = load_image(dicom_testfile("US1_UNCR.dcm")).pixels.astype(float)
    assert 0 < np.abs(lossy.astype(float) - orig).mean() < 3


@pytest.mark.parametrize("name", ["SC_ybr_full_uncompressed.dcm", "SC_ybr_full_422_uncompressed.dcm"])
def test_ybr_converted_to_rgb(name):
    """YBR_FULL(_422) must come out as RGB close to the RGB twin (YCbCr rounding only)."""
    ybr = load_image(dicom_testfile(name)).pixels.astype(int)
    rgb = load_image(dicom_testfile("SC_rgb.dcm")).pixels.astype(int)
    assert ybr.shape == rgb.shape == (100, 100, 3)
    assert np.abs(ybr - rgb).max() <= 8 and np.abs(ybr - rgb).mean() < 1
    # the stored YCbCr bytes are clearly different from RGB: conversion really happened
    stored = _raw("SC_ybr_full_uncompressed.dcm", "u1", (100, 100, 3)).astype(int)
    assert np.abs(stored - rgb).mean() > 20


def test_jpeg_baseline_ybr422_close_to_rgb():
    img = load_image(dicom_testfile("SC_rgb_dcmtk_+eb+cy+np.dcm"))  # JPEG baseline, YBR_FULL_422
    ref = load_image(dicom_testfile("SC_rgb.dcm")).pixels.astype(int)
    assert img.meta.photometric == "YBR_FULL_422" and img.pixels.shape == (100, 100, 3)
    assert np.abs(img.pixels.astype(int) - ref).mean() < 6


def test_deflated_transfer_syntax():
    """Deflated datasets cannot be streamed from disk by iter_pixels: read via the Dataset instead."""
    path = dicom_testfile("image_dfl.dcm")
    img = load_image(path)
    assert img.meta.transfer_syntax == "1.2.840.10008.1.2.1.99"
    np.testing.assert_array_equal(img.pixels, pydicom.dcmread(path).pixel_array)


def test_inconsistent_encoding_falls_back_to_dataset_decode():
    """SC_rgb_jpeg.dcm declares explicit VR but is implicit: streaming parse fails, Dataset decode works.
    SC_rgb_jpeg_dcmd.dcm is the same image decompressed by dcmtk (decoder rounding only)."""
    a = load_image(dicom_testfile("SC_rgb_jpeg.dcm")).pixels.astype(int)
    b = load_image(dicom_testfile("SC_rgb_jpeg_dcmd.dcm")).pixels.astype(int)
    assert a.shape == b.shape == (256, 256, 3)
    assert np.abs(a - b).max() <= 2


def test_palette_colour_against_manual_lut():
    """OBXXXX1A: 8-bit indices + 16-bit palette; apply the three LUTs by hand from the raw bytes."""
    path = dicom_testfile("OBXXXX1A.dcm")
    ds = pydicom.dcmread(path)
    idx = np.frombuffer(ds.PixelData, dtype="u1").reshape(600, 800)
    first = int(ds.RedPaletteColorLookupTableDescriptor[1])
    luts = [
        np.frombuffer(getattr(ds, f"{c}PaletteColorLookupTableData"), dtype="<u2")
        for c in ("Red", "Green", "Blue")
    ]
    pos = np.clip(idx.astype(int) - first, 0, len(luts[0]) - 1)
    expected = np.stack([lut[pos] for lut in luts], axis=-1)
    img = load_image(path)
    assert img.pixels.shape == (600, 800, 3) and img.pixels.dtype == np.uint16
    np.testing.assert_array_equal(img.pixels, expected)


def test_palette_without_file_meta():
    """OT-PAL-8-face.dcm has no preamble/File Meta: still read (force), palette -> RGB."""
    img = load_image(dicom_testfile("OT-PAL-8-face.dcm"))
    assert img.pixels.shape == (480, 640, 3) and img.meta.photometric == "PALETTE COLOR"
    assert len(np.unique(img.pixels.reshape(-1, 3), axis=0)) > 10


def test_16bit_palette_us_regions_real_file():
    img = load_image(dicom_testfile("gdcm-US-ALOKA-16.dcm"))
    assert img.pixels.shape == (480, 640, 3)
    # three regions in the file; two calibrated in cm (0.0382653 cm/pixel), one without units
    assert len(img.meta.us_regions) == 3
    assert img.meta.spacing_source == "SequenceOfUltrasoundRegions"
    np.testing.assert_allclose(img.meta.pixel_spacing_mm, (0.3826530650, 0.3826530650), rtol=1e-8)


# ---------------------------------------------------------------- grey value pipeline


def test_monochrome2_multiframe_unchanged_dtype():
    img = load_image(dicom_testfile("emri_small.dcm"))
    assert img.pixels.shape == (10, 64, 64) and img.pixels.dtype == np.uint16
    np.testing.assert_array_equal(img.pixels, _raw("emri_small.dcm", "<u2", (10, 64, 64)))


def test_rescale_slope_intercept():
    path = dicom_testfile("CT_small.dcm")
    ds = pydicom.dcmread(path)
    raw = np.frombuffer(ds.PixelData, dtype="<i2").reshape(128, 128)
    img = load_image(path)
    assert img.pixels.dtype == np.float32
    np.testing.assert_allclose(img.pixels, raw * float(ds.RescaleSlope) + float(ds.RescaleIntercept))


def test_voi_lut_sequence():
    path = dicom_testfile("vlut_04.dcm")
    ds = pydicom.dcmread(path)
    item = ds.VOILUTSequence[0]
    n, first, _bits = item.LUTDescriptor
    lut = np.asarray(item.LUTData, dtype=np.float64)
    raw = np.frombuffer(ds.PixelData, dtype="u1").reshape(512, 512)
    expected = lut[np.clip(raw.astype(int) - first, 0, (n or 65536) - 1)]
    img = load_image(path)
    assert img.pixels.dtype == np.float32
    np.testing.assert_array_equal(img.pixels, expected)
    # voi=False leaves the stored values (and dtype) alone
    plain = load_image(path, voi=False)
    assert plain.pixels.dtype == np.uint8
    np.testing.assert_array_equal(plain.pixels, raw)


def test_modality_lut_sequence():
    path = dicom_testfile("mlut_18.dcm")
    ds = pydicom.dcmread(path)
    item = ds.ModalityLUTSequence[0]
    n, first, _bits = item.LUTDescriptor
    data = item.LUTData
    lut = np.frombuffer(data, dtype="<u2") if isinstance(data, bytes) else np.asarray(data)
    raw = np.frombuffer(ds.PixelData, dtype="<u2").reshape(512, 512).astype(int)
    bits = int(ds.BitsStored)  # 12 of 16: keep the stored bits, two's complement by hand
    raw = raw & (2**bits - 1)
    raw = np.where(raw >= 2 ** (bits - 1), raw - 2**bits, raw)
    expected = lut[np.clip(raw - first, 0, n - 1)]
    np.testing.assert_array_equal(load_image(path).pixels, expected)


def test_window_center_width_linear():
    """MR_small: signed 16-bit with WindowCenter/Width; DICOM PS3.3 C.11.2.1.2 linear function."""
    path = dicom_testfile("MR_small.dcm")
    ds = pydicom.dcmread(path)
    raw = np.frombuffer(ds.PixelData, dtype="<i2").reshape(64, 64).astype(np.float64)
    c, w = float(ds.WindowCenter), float(ds.WindowWidth)
    ymin, ymax = -32768.0, 32767.0
    expected = ((raw - (c - 0.5)) / (w - 1) + 0.5) * (ymax - ymin) + ymin
    expected = np.where(raw <= c - 0.5 - (w - 1) / 2, ymin, np.where(raw > c - 0.5 + (w - 1) / 2, ymax, expected))
    np.testing.assert_allclose(load_image(path).pixels, expected, atol=1e-2)
    np.testing.assert_array_equal(load_image(path, voi=False).pixels, raw)


def _as_monochrome1(src: Path, dst: Path) -> Dataset:
    ds = pydicom.dcmread(src)
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(dst)
    return ds


def test_monochrome1_synthetic_inverted(tmp_path):
    """Same stored values labelled MONOCHROME1 must come out as (2^BitsStored - 1) - value."""
    src = dicom_testfile("emri_small.dcm")
    ds = _as_monochrome1(src, tmp_path / "m1.dcm")
    raw = _raw("emri_small.dcm", "<u2", (10, 64, 64)).astype(np.int64)
    img = load_image(tmp_path / "m1.dcm")
    assert img.pixels.dtype == np.uint16
    np.testing.assert_array_equal(img.pixels, (2 ** int(ds.BitsStored) - 1) - raw)
    # and a bright spot stays the brightest after display inversion of the MONOCHROME1 file
    assert img.pixels.reshape(10, -1).argmax(1).tolist() == raw.reshape(10, -1).argmin(1).tolist()


def test_monochrome1_real_file():
    """RG3 (CR, MONOCHROME1): without VOI, display value + stored value = 2^BitsStored - 1."""
    path = dicom_testfile("RG3_UNCR.dcm")
    ds = pydicom.dcmread(path)
    raw = np.frombuffer(ds.PixelData, dtype="<u2").reshape(int(ds.Rows), int(ds.Columns)).astype(np.int64)
    img = load_image(path, voi=False)
    assert read_meta(path).photometric == "MONOCHROME1"
    np.testing.assert_array_equal(img.pixels.astype(np.int64) + raw, 2 ** int(ds.BitsStored) - 1)
    # with its window applied it is still inverted: correlation with the stored values is negative
    windowed = load_image(path).pixels
    assert np.corrcoef(windowed[::8, ::8].ravel(), raw[::8, ::8].ravel())[0, 1] < -0.5


# ---------------------------------------------------------------- cine streaming


def test_cine_streams_frame_by_frame():
    path = dicom_testfile("color3d_jpeg_baseline.dcm")
    meta = read_meta(path)
    assert (meta.frames, meta.rows, meta.columns, meta.photometric) == (120, 480, 640, "YBR_FULL_422")
    full_size = 120 * 480 * 640 * 3
    count, first, last = 0, None, None
    tracemalloc.start()
    try:
        for frame in iter_frames(path):
            assert frame.shape == (480, 640, 3) and frame.dtype == np.uint8
            if count == 0:
                first = frame.copy()
            last = frame
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 120
    assert peak < 0.15 * full_size, f"peak {peak / 1e6:.1f} MB vs {full_size / 1e6:.1f} MB for all frames"
    # frames are the real ones: compare with pydicom decoding single frames by index
    from pydicom.pixels import pixel_array

    np.testing.assert_array_equal(first, pixel_array(path, index=0))
    np.testing.assert_array_equal(last, pixel_array(path, index=119))
    assert not np.array_equal(first, last)


def test_iter_frames_single_image_yields_one():
    frames = list(iter_frames(dicom_testfile("US1_UNCR.dcm")))
    assert len(frames) == 1 and frames[0].shape == (480, 640, 3)


def test_iter_frames_matches_load_image_multiframe():
    path = dicom_testfile("OBXXXX1A_rle_2frame.dcm")
    frames = list(iter_frames(path))
    np.testing.assert_array_equal(np.stack(frames), load_image(path).pixels)


# ---------------------------------------------------------------- metadata


def test_read_meta_is_header_only(monkeypatch):
    """read_meta must not decode pixels: make every decoder explode and it still works."""
    import pydicom.pixels.utils as utils

    def boom(*a, **k):
        raise AssertionError("pixel decode during read_meta")

    monkeypatch.setattr(utils, "pixel_array", boom)
    monkeypatch.setattr(utils, "iter_pixels", boom)
    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(boom))
    meta = read_meta(dicom_testfile("color3d_jpeg_baseline.dcm"))
    assert meta.frames == 120 and meta.transfer_syntax == "1.2.840.10008.1.2.4.50"
    assert meta.transfer_syntax_name == "JPEG Baseline (Process 1)"
    np.testing.assert_allclose(meta.pixel_spacing_mm, (0.5104970559, 0.5104970559), rtol=1e-8)


def test_meta_fields_and_uids():
    path = dicom_testfile("CT_small.dcm")
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    meta = read_meta(path)
    assert meta.format == "dicom" and meta.modality == "CT"
    assert (meta.rows, meta.columns, meta.frames, meta.bits_stored) == (128, 128, 1, int(ds.BitsStored))
    assert meta.pixel_spacing_mm == (float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1]))
    assert meta.spacing_source == "PixelSpacing"
    assert (meta.study_uid, meta.series_uid, meta.sop_uid) == (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)


def _us_dataset(regions: list[dict], patient: bool = False) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = UltrasoundImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    if patient:
        ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Doe^Jane", "SECRET-ID-42", "19700101"
    seq = []
    for r in regions:
        item = Dataset()
        for k, v in r.items():
            setattr(item, k, v)
        seq.append(item)
    ds.SequenceOfUltrasoundRegions = seq
    ds.set_pixel_data(np.arange(64 * 80, dtype=np.uint8).reshape(64, 80), "MONOCHROME2", 8)
    return ds


def _region(x0, y0, x1, y1, dx, dy, ux, uy, fmt=1, dtype=1):
    return dict(
        RegionLocationMinX0=x0, RegionLocationMinY0=y0, RegionLocationMaxX1=x1, RegionLocationMaxY1=y1,
        PhysicalDeltaX=dx, PhysicalDeltaY=dy, PhysicalUnitsXDirection=ux, PhysicalUnitsYDirection=uy,
        RegionSpatialFormat=fmt, RegionDataType=dtype,
    )


def test_us_regions_synthetic(tmp_path):
    """A large Doppler strip (seconds x cm/s) must be ignored; the cm B-mode region gives the spacing."""
    doppler = _region(0, 40, 79, 63, 0.01, 2.5, 4, 7, fmt=3, dtype=3)  # bigger than the B-mode box
    bmode = _region(10, 0, 50, 30, 0.02, 0.03, 3, 3)
    ds = _us_dataset([doppler, bmode])
    ds.save_as(tmp_path / "us.dcm", enforce_file_format=True)
    meta = read_meta(tmp_path / "us.dcm")
    assert meta.spacing_source == "SequenceOfUltrasoundRegions"
    assert meta.pixel_spacing_mm == pytest.approx((0.3, 0.2))  # (row = dy, col = dx) in mm
    assert [(r.x0, r.y0, r.x1, r.y1, r.unit_x) for r in meta.us_regions] == [(0, 40, 79, 63, 4), (10, 0, 50, 30, 3)]


def test_us_regions_without_cm_give_no_spacing():
    ds = _us_dataset([_region(0, 0, 79, 63, 0.01, 0.01, 0, 0)])
    regions = parse_us_regions(ds)
    assert len(regions) == 1 and spacing_from_regions(regions) is None


def test_pixel_spacing_wins_over_regions(tmp_path):
    ds = _us_dataset([_region(0, 0, 79, 63, 0.05, 0.05, 3, 3)])
    ds.PixelSpacing = [0.1, 0.2]
    ds.save_as(tmp_path / "ps.dcm", enforce_file_format=True)
    meta = read_meta(tmp_path / "ps.dcm")
    assert meta.pixel_spacing_mm == (0.1, 0.2) and meta.spacing_source == "PixelSpacing"


def test_no_patient_identifiers_in_meta_or_logs(tmp_path, caplog):
    ds = _us_dataset([_region(0, 0, 79, 63, 0.05, 0.05, 3, 3)], patient=True)
    ds.save_as(tmp_path / "p.dcm", enforce_file_format=True)
    caplog.set_level("DEBUG")
    img = load_image(tmp_path / "p.dcm")
    text = json.dumps(img.meta.to_dict(), default=str) + caplog.text
    for secret in ("Doe", "Jane", "SECRET-ID-42", "19700101"):
        assert secret not in text


# ---------------------------------------------------------------- bad input


def _copy(name: str, tmp_path: Path, new_name: str | None = None) -> Path:
    dst = tmp_path / (new_name or name)
    shutil.copy(dicom_testfile(name), dst)
    return dst


def test_not_dicom(tmp_path):
    p = tmp_path / "notes.dcm"
    p.write_text("this is not a DICOM file at all, just some text " * 10)
    with pytest.raises(InputError, match="not a DICOM file") as ei:
        load_image(p)
    assert ei.value.path == str(p)


@pytest.mark.parametrize("fraction", [0.5, 0.999])
def test_truncated_uncompressed(tmp_path, fraction):
    src = dicom_testfile("US1_UNCR.dcm").read_bytes()
    p = tmp_path / "cut.dcm"
    p.write_bytes(src[: int(len(src) * fraction)])
    with pytest.raises(InputError, match="truncated"):
        read_meta(p)
    with pytest.raises(InputError, match="truncated"):
        load_image(p)


def test_truncated_compressed(tmp_path):
    src = dicom_testfile("US1_J2KR.dcm").read_bytes()
    p = tmp_path / "cut.dcm"
    p.write_bytes(src[: int(len(src) * 0.6)])
    with pytest.raises(InputError, match="truncated"):
        load_image(p)


def test_truncated_pixel_data_element():
    """pydicom's own MR_truncated.dcm: PixelData shorter than Rows x Columns x 2."""
    with pytest.raises(InputError, match="truncated pixel data"):
        load_image(dicom_testfile("MR_truncated.dcm"))


def test_no_pixel_data():
    with pytest.raises(InputError, match="no pixel data"):
        read_meta(dicom_testfile("rtplan.dcm"))


def test_unsupported_transfer_syntax(tmp_path):
    ds = pydicom.dcmread(dicom_testfile("US1_J2KR.dcm"))  # encapsulated, so it can be relabelled
    ds.file_meta.TransferSyntaxUID = pydicom.uid.MPEG2MPML  # no pydicom decoder exists for video
    ds.save_as(tmp_path / "mpeg.dcm")
    with pytest.raises(InputError, match="unsupported transfer syntax MPEG2"):
        load_image(tmp_path / "mpeg.dcm")


def test_zero_frames(tmp_path):
    ds = pydicom.dcmread(dicom_testfile("OBXXXX1A_2frame.dcm"))
    ds.NumberOfFrames = 0
    ds.save_as(tmp_path / "zero.dcm")
    with pytest.raises(InputError, match="zero frames"):
        load_image(tmp_path / "zero.dcm")
    with pytest.raises(InputError, match="zero frames"):
        next(iter_frames(tmp_path / "zero.dcm"))


def test_undecodable_data_is_input_error():
    """JPEG-lossy.dcm: libjpeg rejects its stream; must be an InputError, not a crash."""
    with pytest.raises(InputError, match="cannot decode"):
        load_image(dicom_testfile("JPEG-lossy.dcm"))


def test_missing_file():
    with pytest.raises(InputError, match="no such file"):
        load_image("/definitely/not/here.dcm")
