"""The overlay as a DICOM Secondary Capture (infer.dicom_sc): real vendor ultrasound files as sources,
dciodvfy on every capture written (tests/conftest.py), pixels and references read back."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from conftest import dicom_testfile

from sonoseg.errors import InputError
from sonoseg.outputs.dicom_sc import SERIES_DESCRIPTION, write_overlay_sc

SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"


def picture(rows, cols, seed=0):
    return (np.random.default_rng(seed).random((rows, cols, 3)) * 255).astype(np.uint8)


@pytest.mark.parametrize("name,frame", [("OBXXXX1A.dcm", None), ("US1_UNCR.dcm", None),
                                        ("OBXXXX1A_rle_2frame.dcm", 1)])
def test_capture_is_in_the_study_references_its_image_and_keeps_the_pixels(tmp_path, name, frame):
    import dciodvfy_check as dv

    from sonoseg.pacs.files import is_result
    from sonoseg.pacs.segment import is_segmentable

    src = pydicom.dcmread(dicom_testfile(name), stop_before_pixels=True)
    rgb = picture(src.Rows, src.Columns)
    out = write_overlay_sc(dicom_testfile(name), rgb, tmp_path / "o.overlay.dcm", frame_index=frame)
    ds = pydicom.dcmread(out)
    assert ds.SOPClassUID == SC_STORAGE and ds.Modality == "OT"  # not taken for an original ultrasound image
    assert ds.StudyInstanceUID == src.StudyInstanceUID and ds.SeriesInstanceUID != src.SeriesInstanceUID
    assert ds.SeriesDescription == SERIES_DESCRIPTION and ds.Manufacturer == "sonoseg"
    assert ds.PhotometricInterpretation == "RGB" and np.array_equal(ds.pixel_array, rgb)
    (ref,) = ds.SourceImageSequence
    assert (ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID) == (src.SOPClassUID, src.SOPInstanceUID)
    assert ref.get("ReferencedFrameNumber") == (None if frame is None else frame + 1)
    if src.get("SequenceOfUltrasoundRegions"):  # the spacing sonoseg measured with, as in the SEG
        from sonoseg.io.dicom import read_dicom_meta

        assert [float(v) for v in ds.PixelSpacing] == pytest.approx(read_dicom_meta(dicom_testfile(name)).pixel_spacing_mm)
    else:
        assert "PixelSpacing" not in ds
    for kw in ("PatientBirthTime", "PatientWeight", "InstitutionName", "StationName"):
        assert kw not in ds, kw  # reduced like the SEG
    assert ds.PatientOrientation in ("", None, [])  # the source states none: not invented
    assert is_result(out) and not is_segmentable(out)  # pushed with the SEGs, never segmented by a listener
    if dv.available():
        assert dv.seg_problems(out)[0] == []


def test_bad_overlays(tmp_path):
    name = dicom_testfile("US1_UNCR.dcm")
    with pytest.raises(InputError, match="480x640"):
        write_overlay_sc(name, picture(10, 10), tmp_path / "x.dcm")
    with pytest.raises(InputError, match="uint8"):
        write_overlay_sc(name, np.zeros((480, 640), np.uint8), tmp_path / "x.dcm")
    with pytest.raises(InputError, match="frame index"):
        write_overlay_sc(name, picture(480, 640), tmp_path / "x.dcm", frame_index=3)
