"""DICOM SEG written for real vendor ultrasound files (pydicom-data), read back with highdicom/pydicom."""

from __future__ import annotations

import cv2
import highdicom as hd
import numpy as np
import pydicom
import pytest
from conftest import dicom_testfile
from pydicom.sr.codedict import codes

from sonoseg.errors import InputError
from sonoseg.outputs.dicom_seg import NOMINAL_SLICE_THICKNESS_MM, SegWriteOptions, read_dicom_seg, write_dicom_seg

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
US_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1"  # single-frame SOP Class (some files hold 2 frames anyway)
TEMPORAL_POSITION_INDEX = 0x00209128
VENDOR_FILES = ["US1_UNCR.dcm", "OBXXXX1A.dcm", "OBXXXX1A_2frame.dcm", "OBXXXX1A_rle.dcm",
                "OBXXXX1A_rle_2frame.dcm", "US1_J2KR.dcm"]


def header(name):
    return pydicom.dcmread(dicom_testfile(name), stop_before_pixels=True)


def temporal_positions(seg) -> list[int]:
    return [int(item.FrameContentSequence[0].TemporalPositionIndex) for item in seg.PerFrameFunctionalGroupsSequence]


def ellipse_masks(rows, cols, frames):
    m = np.zeros((frames, rows, cols), np.uint8)
    for i in range(frames):
        cv2.ellipse(m[i], (cols // 2 + 25 * i, rows // 2 - 10 * i), (cols // 5, rows // 6), 15 * i, 0, 360, 1, -1)
    return m


def referenced_frames(seg) -> list[tuple[str, int | None]]:
    out = []
    for item in seg.PerFrameFunctionalGroupsSequence:
        (src,) = item.DerivationImageSequence[0].SourceImageSequence
        out.append((src.ReferencedSOPInstanceUID, int(src.ReferencedFrameNumber) if "ReferencedFrameNumber" in src
                    else None))
    return out


@pytest.mark.parametrize("name", VENDOR_FILES)
def test_vendor_us_round_trip(tmp_path, name):
    src = header(name)
    n = int(src.get("NumberOfFrames", 1))
    masks = ellipse_masks(src.Rows, src.Columns, n)
    out = write_dicom_seg(dicom_testfile(name), masks if n > 1 else masks[0], tmp_path / "seg.dcm")

    ds = pydicom.dcmread(out)
    assert ds.SOPClassUID == SEG_STORAGE and ds.Modality == "SEG"
    assert (ds.Rows, ds.Columns) == (src.Rows, src.Columns)
    assert int(ds.NumberOfFrames) == n  # one segment, one SEG frame per source frame
    assert ds.StudyInstanceUID == src.StudyInstanceUID and ds.SeriesInstanceUID != src.SeriesInstanceUID
    ref = ds.ReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == src.SeriesInstanceUID
    assert ref.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    refs = referenced_frames(ds)
    assert {uid for uid, _ in refs} == {src.SOPInstanceUID}
    multiframe_class = src.SOPClassUID != US_IMAGE_STORAGE
    if n > 1:  # per-frame derivation references; the frame number only where the SOP Class allows it
        assert [f for _, f in refs] == (list(range(1, n + 1)) if multiframe_class else [None] * n)
        assert temporal_positions(ds) == list(range(1, n + 1))
    assert ds.Manufacturer == "sonoseg"
    (segment,) = ds.SegmentSequence
    assert segment.SegmentLabel == "lesion" and segment.SegmentAlgorithmType == "AUTOMATIC"
    category = segment.SegmentedPropertyCategoryCodeSequence[0]
    assert category.CodeValue == codes.SCT.MorphologicallyAbnormalStructure.value
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == codes.SCT.Lesion.value
    algo = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert algo.AlgorithmName == "sonoseg"
    # no US geometry -> no invented orientation; the calibration sonoseg measures with -> pixel measures
    shared = ds.SharedFunctionalGroupsSequence[0]
    assert "PlaneOrientationSequence" not in shared and "PlanePositionSequence" not in shared
    regions = src.get("SequenceOfUltrasoundRegions") or []
    if regions:  # OBXXXX1A*: calibrated in cm per pixel (PhysicalUnits 3), no PixelSpacing
        (pm,) = shared.PixelMeasuresSequence
        main = max(regions, key=lambda r: (r.RegionLocationMaxX1 - r.RegionLocationMinX0)
                   * (r.RegionLocationMaxY1 - r.RegionLocationMinY0))
        assert [float(v) for v in pm.PixelSpacing] == pytest.approx(
            [10 * float(main.PhysicalDeltaY), 10 * float(main.PhysicalDeltaX)], rel=1e-12)
        assert float(pm.SliceThickness) == NOMINAL_SLICE_THICKNESS_MM
        assert "PixelMeasuresSequence" not in ds.PerFrameFunctionalGroupsSequence[0]
    else:  # US1_*: uncalibrated -> nothing invented
        assert "PixelMeasuresSequence" not in shared

    seg = hd.seg.segread(out)
    if n > 1 and multiframe_class:
        px = seg.get_pixels_by_source_frame(src.SOPInstanceUID, list(range(1, n + 1)))
    elif n > 1:
        px = seg.get_pixels_by_dimension_index_values([[i] for i in range(1, n + 1)],
                                                      dimension_index_pointers=[TEMPORAL_POSITION_INDEX])
    else:
        px = seg.get_pixels_by_source_instance([src.SOPInstanceUID])
    assert px.shape == (n, src.Rows, src.Columns, 1)
    assert np.array_equal(px[..., 0], masks)
    assert np.array_equal(read_dicom_seg(out), masks)


@pytest.mark.parametrize("name", ["OBXXXX1A_2frame.dcm", "OBXXXX1A_expb_2frame.dcm"])
def test_frames_of_a_single_frame_sop_class_without_frame_numbers(tmp_path, name):
    """Issue 27: 2 frames under Ultrasound Image Storage (a single-frame SOP Class). The SEG has one frame
    per source frame, references the instance without ReferencedFrameNumber (dciodvfy: 0 errors), and
    says which frame each is by the Temporal Position Index dimension, which highdicom reads back."""
    import dciodvfy_check as dv

    src = header(name)
    assert src.SOPClassUID == US_IMAGE_STORAGE and int(src.NumberOfFrames) == 2
    masks = ellipse_masks(src.Rows, src.Columns, 2)
    out = write_dicom_seg(dicom_testfile(name), masks, tmp_path / "seg.dcm")
    ds = pydicom.dcmread(out)
    assert referenced_frames(ds) == [(src.SOPInstanceUID, None)] * 2
    assert temporal_positions(ds) == [1, 2]
    seg = hd.seg.segread(out)
    px = seg.get_pixels_by_dimension_index_values([[1], [2]], dimension_index_pointers=[TEMPORAL_POSITION_INDEX],
                                                  combine_segments=True)
    assert np.array_equal(px, masks)
    assert np.array_equal(read_dicom_seg(out), masks)
    second = write_dicom_seg(dicom_testfile(name), masks[1:], tmp_path / "second.dcm", SegWriteOptions(frame_indices=[1]))
    assert temporal_positions(pydicom.dcmread(second)) == [2]
    assert np.array_equal(read_dicom_seg(second, source_frames=[0, 1]), np.stack([np.zeros_like(masks[0]), masks[1]]))
    if not dv.available():
        pytest.skip("dciodvfy not installed (apt-get install dicom3tools)")
    for path in (out, second):
        assert dv.seg_problems(path)[0] == []


def test_patient_header_reduced_to_what_seg_requires(tmp_path):
    name = "US1_UNCR.dcm"  # carries birth time, size, weight, history, institution, station
    src = header(name)
    assert {"PatientWeight", "AdditionalPatientHistory", "InstitutionName"} <= set(src.dir())
    m = ellipse_masks(src.Rows, src.Columns, 1)[0]
    ds = pydicom.dcmread(write_dicom_seg(dicom_testfile(name), m, tmp_path / "s.dcm"))
    for kw in ("PatientBirthTime", "PatientSize", "PatientWeight", "AdditionalPatientHistory", "InstitutionName",
               "StationName"):
        assert kw not in ds, kw
        for item in ds.get("ContributingEquipmentSequence", []):
            assert kw not in item, kw
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"):  # Type 2: copied
        assert ds[kw].value == src[kw].value


def test_cine_empty_frames_kept_or_omitted(tmp_path):
    name = "OBXXXX1A_rle_2frame.dcm"
    src = header(name)
    masks = ellipse_masks(src.Rows, src.Columns, 2)
    masks[1] = 0  # second frame analysed, nothing found

    kept = write_dicom_seg(dicom_testfile(name), masks, tmp_path / "kept.dcm")
    ds = pydicom.dcmread(kept)
    assert int(ds.NumberOfFrames) == 2 and [f for _, f in referenced_frames(ds)] == [1, 2]
    assert np.array_equal(read_dicom_seg(kept), masks)

    omitted = write_dicom_seg(dicom_testfile(name), masks, tmp_path / "omit.dcm", SegWriteOptions(omit_empty_frames=True))
    ds = pydicom.dcmread(omitted)
    assert int(ds.NumberOfFrames) == 1 and [f for _, f in referenced_frames(ds)] == [1]
    seg = hd.seg.segread(omitted)
    with pytest.raises(ValueError):  # highdicom cannot know frame 2 exists ...
        seg.get_pixels_by_source_frame(src.SOPInstanceUID, [1, 2])
    px = seg.get_pixels_by_source_frame(src.SOPInstanceUID, [1, 2], assert_missing_frames_are_empty=True)
    assert np.array_equal(px[..., 0], masks)  # ... but reads it as empty when told
    assert np.array_equal(read_dicom_seg(omitted, source_frames=[0, 1]), masks)


def test_all_empty_single_frame(tmp_path):
    name = "US1_J2KR.dcm"
    src = header(name)
    empty = np.zeros((src.Rows, src.Columns), np.uint8)
    for omit in (False, True):  # highdicom keeps the frame when everything is empty
        out = write_dicom_seg(dicom_testfile(name), empty, tmp_path / f"e{omit}.dcm", SegWriteOptions(omit_empty_frames=omit))
        ds = pydicom.dcmread(out)
        assert int(ds.NumberOfFrames) == 1
        assert not read_dicom_seg(out).any()


def test_label_map_subset_frames_and_labelmap_type(tmp_path):
    name = "OBXXXX1A_rle_2frame.dcm"
    src = header(name)
    lab = np.zeros((1, src.Rows, src.Columns), np.uint8)
    lab[0, 100:200, 100:300] = 1
    lab[0, 300:380, 400:600] = 3  # non-consecutive label value
    labels = {1: "lesion", 3: "cyst"}
    out = write_dicom_seg(dicom_testfile(name), lab, tmp_path / "sub.dcm", SegWriteOptions(labels=labels, frame_indices=[1]))
    ds = pydicom.dcmread(out)
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["lesion", "cyst"]
    assert [int(s.SegmentNumber) for s in ds.SegmentSequence] == [1, 2]  # BINARY: 1..N
    assert ds.SegmentSequence[1].SegmentedPropertyTypeCodeSequence[0].CodeValue == codes.SCT.Cyst.value
    assert int(ds.NumberOfFrames) == 2  # one frame per segment, both referencing source frame 2
    assert [f for _, f in referenced_frames(ds)] == [2, 2]
    back = read_dicom_seg(out, source_frames=[0, 1])
    expected = np.zeros((2, src.Rows, src.Columns), np.uint8)
    expected[1] = np.where(lab[0] == 3, 2, lab[0])  # segment numbers
    assert np.array_equal(back, expected)

    out = write_dicom_seg(dicom_testfile(name), np.repeat(lab, 2, 0), tmp_path / "lm.dcm",
                          SegWriteOptions(labels=labels, segmentation_type="LABELMAP"))
    ds = pydicom.dcmread(out)
    assert ds.SegmentationType == "LABELMAP" and int(ds.NumberOfFrames) == 2
    assert np.array_equal(read_dicom_seg(out), np.repeat(lab, 2, 0))  # label values kept


def test_unknown_names_get_generic_codes_and_overrides(tmp_path):
    name = "US1_UNCR.dcm"
    src = header(name)
    m = np.zeros((src.Rows, src.Columns), np.uint8)
    m[50:100, 50:100] = 1
    m[200:260, 300:400] = 2
    out = write_dicom_seg(dicom_testfile(name), m, tmp_path / "s.dcm", SegWriteOptions(
        labels={1: "class 1", 2: "thyroid"},
        property_codes={1: (codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Nodule)}))
    seg = pydicom.dcmread(out).SegmentSequence
    assert seg[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == codes.SCT.Nodule.value
    assert seg[1].SegmentedPropertyCategoryCodeSequence[0].CodeValue == codes.SCT.AnatomicalStructure.value
    assert seg[1].SegmentedPropertyTypeCodeSequence[0].CodeValue == codes.SCT.Thyroid.value
    assert np.array_equal(read_dicom_seg(out)[0], m)


def test_dataset_input_untouched_and_seeded_uids(tmp_path):
    full = pydicom.dcmread(dicom_testfile("OBXXXX1A_2frame.dcm"))
    before = (full.NumberOfFrames, full.PatientName, len(full.PixelData))
    masks = ellipse_masks(full.Rows, full.Columns, 2)
    a = pydicom.dcmread(write_dicom_seg(full, masks, tmp_path / "a.dcm", SegWriteOptions(seed_uid="s1")))
    b = pydicom.dcmread(write_dicom_seg(full, masks, tmp_path / "b.dcm", SegWriteOptions(seed_uid="s1")))
    assert (full.NumberOfFrames, full.PatientName, len(full.PixelData)) == before
    assert a.SOPInstanceUID == b.SOPInstanceUID and a.SeriesInstanceUID == b.SeriesInstanceUID


def test_bad_inputs(tmp_path):
    name = "US1_UNCR.dcm"
    src = header(name)
    ok = np.zeros((src.Rows, src.Columns), np.uint8)
    with pytest.raises(InputError, match="480x640"):
        write_dicom_seg(dicom_testfile(name), np.zeros((10, 10), np.uint8), tmp_path / "x.dcm")
    with pytest.raises(InputError, match="single-frame"):
        write_dicom_seg(dicom_testfile(name), np.stack([ok, ok]), tmp_path / "x.dcm")
    with pytest.raises(InputError, match="segment name"):
        write_dicom_seg(dicom_testfile(name), ok + 2, tmp_path / "x.dcm")
    cine = dicom_testfile("OBXXXX1A_rle_2frame.dcm")
    c = np.zeros((3, 600, 800), np.uint8)
    with pytest.raises(InputError, match="mask frames"):
        write_dicom_seg(cine, c, tmp_path / "x.dcm")
    with pytest.raises(InputError, match="within"):
        write_dicom_seg(cine, c[:1], tmp_path / "x.dcm", SegWriteOptions(frame_indices=[2]))
    not_dicom = tmp_path / "n.dcm"
    not_dicom.write_bytes(b"not a dicom file at all")
    with pytest.raises(InputError, match="n.dcm"):
        write_dicom_seg(not_dicom, ok, tmp_path / "x.dcm")


def test_seg_write_options_check_the_type_when_made():
    from sonoseg.errors import ConfigError

    assert SegWriteOptions(segmentation_type="labelmap").segmentation_type == "LABELMAP"
    assert SegWriteOptions() == SegWriteOptions(labels=None, segmentation_type="BINARY", series_number=900)
    with pytest.raises(ConfigError, match="segmentation type 'MASK': use one of BINARY, FRACTIONAL, LABELMAP"):
        SegWriteOptions(segmentation_type="MASK")


def test_fractional_probability_map(tmp_path):
    name = "OBXXXX1A.dcm"
    src = header(name)
    prob = np.zeros((src.Rows, src.Columns), np.float32)
    prob[100:300, 200:500] = np.linspace(0.0, 1.0, 300, dtype=np.float32)[None, :]
    out = write_dicom_seg(dicom_testfile(name), prob, tmp_path / "f.dcm",
                          SegWriteOptions(segmentation_type="FRACTIONAL", labels={"1": "mass"}))
    ds = pydicom.dcmread(out)
    assert ds.SegmentationType == "FRACTIONAL" and ds.SegmentationFractionalType == "PROBABILITY"
    assert ds.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == codes.SCT.Mass.value
    px = hd.seg.segread(out).get_pixels_by_source_instance([src.SOPInstanceUID])[0, ..., 0]
    assert np.abs(px - prob).max() <= 0.5 / 255 + 1e-6  # stored as 8-bit fractions
    with pytest.raises(InputError, match="probabilities"):
        write_dicom_seg(dicom_testfile(name), prob * 2, tmp_path / "g.dcm", SegWriteOptions(segmentation_type="FRACTIONAL"))


def test_conformant_cine_seg_has_patient_orientation_and_passes_dciodvfy(tmp_path):
    """A US Multi-frame source (conformant): the SEG has PatientOrientation (empty = unknown) and
    dciodvfy reports no error at all (no allowance needed)."""
    import dciodvfy_check as dv

    from sonoseg.io.us_wrap import wrap_as_us_cine

    frames = (np.random.default_rng(0).random((3, 48, 64)) * 255).astype(np.uint8)
    src = wrap_as_us_cine(frames, tmp_path / "cine.dcm", frame_time_ms=40.0, pixel_spacing_mm=(0.2, 0.2))
    masks = np.zeros((3, 48, 64), np.uint8)
    masks[:, 10:30, 20:40] = 1
    out = write_dicom_seg(src, masks, tmp_path / "cine.seg.dcm")
    ds = pydicom.dcmread(out)
    assert "PatientOrientation" in ds and ds.PatientOrientation in ("", None, [])
    if not dv.available():
        pytest.skip("dciodvfy not installed (apt-get install dicom3tools)")
    errors, _ = dv.seg_problems(out)
    assert errors == []


def _phantom_source(tmp_path, name, **wrap):
    from sonoseg.data.phantom import make_phantom
    from sonoseg.io.us_wrap import UsWrapOptions, wrap_as_us_dicom

    ph = make_phantom((96, 128), n_lesions=1, seed=3)
    return wrap_as_us_dicom(ph.image, tmp_path / name, options=UsWrapOptions(seed_uid=name), **wrap), ph.mask.astype(np.uint8)


@pytest.mark.parametrize("edit,expected", [
    # (header change, (PixelSpacing, SliceThickness) expected in the SEG or None)
    (None, ([0.2, 0.35], NOMINAL_SLICE_THICKNESS_MM)),  # US regions only (as scanners write it)
    ({"PixelSpacing": [0.5, 0.25], "SliceThickness": 2.5}, ([0.5, 0.25], 2.5)),  # PixelSpacing wins, thickness kept
    ({"SequenceOfUltrasoundRegions": None, "ImagerPixelSpacing": [0.1, 0.1]}, None),  # detector plane: not copied
    ({"SequenceOfUltrasoundRegions": None, "PixelSpacing": [0.0, 0.2], "SliceThickness": 0}, None),  # invalid
    ({"RegionLocationMaxX1": 1000}, None),  # region box outside the image (resized after calibration): dropped
])
def test_phantom_calibration_travels_into_the_seg(tmp_path, edit, expected):
    """Known calibrations (a phantom wrapped as US with regions of 0.2 x 0.35 mm): the SEG states the
    spacing sonoseg measures with, highdicom reads it back, dciodvfy reports no error."""
    import dciodvfy_check as dv

    from sonoseg.io.dicom import read_dicom_meta

    path, mask = _phantom_source(tmp_path, "ph.dcm", pixel_spacing_mm=(0.2, 0.35))
    if edit:
        ds = pydicom.dcmread(path)
        for kw, v in edit.items():
            if kw.startswith("Region"):
                setattr(ds.SequenceOfUltrasoundRegions[0], kw, v)
            elif v is None:
                del ds[kw]
            else:
                setattr(ds, kw, v)
        ds.save_as(path)
    src = pydicom.dcmread(path)
    out = write_dicom_seg(path, mask, tmp_path / "ph.seg.dcm")
    shared = pydicom.dcmread(out).SharedFunctionalGroupsSequence[0]
    if expected is None:
        assert "PixelMeasuresSequence" not in shared
    else:
        (pm,) = shared.PixelMeasuresSequence
        assert ([float(v) for v in pm.PixelSpacing], float(pm.SliceThickness)) == expected
        if not edit:  # the same spacing as sonoseg's measurements
            assert tuple(float(v) for v in pm.PixelSpacing) == pytest.approx(read_dicom_meta(path).pixel_spacing_mm)
    seg = hd.seg.segread(out)
    assert np.array_equal(seg.get_pixels_by_source_instance([src.SOPInstanceUID])[0, ..., 0], mask)
    if dv.available():
        errors, _ = dv.seg_problems(out)
        assert errors == []


def test_cine_seg_carries_pixel_measures_once_for_all_frames(tmp_path):
    import dciodvfy_check as dv

    from sonoseg.io.us_wrap import wrap_as_us_cine

    frames = (np.random.default_rng(1).random((3, 40, 56)) * 255).astype(np.uint8)
    src = wrap_as_us_cine(frames, tmp_path / "cine.dcm", frame_time_ms=40.0, pixel_spacing_mm=(0.15, 0.3))
    masks = np.zeros((3, 40, 56), np.uint8)
    masks[1:, 5:20, 10:30] = 1
    out = write_dicom_seg(src, masks, tmp_path / "cine.seg.dcm")
    ds = pydicom.dcmread(out)
    (pm,) = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence
    assert [float(v) for v in pm.PixelSpacing] == [0.15, 0.3]
    assert all("PixelMeasuresSequence" not in f for f in ds.PerFrameFunctionalGroupsSequence)
    assert np.array_equal(read_dicom_seg(out), masks)
    if dv.available():
        assert dv.seg_problems(out)[0] == []


@pytest.mark.parametrize("cls,scheme", [("malignant", "SCT"), ("benign", "SCT"), ("normal", "SCT"),
                                        ("fibroadenoma", "99SONOSEG")])
def test_class_finding_is_coded_without_an_unknown_scheme_warning(tmp_path, cls, scheme):
    """Issue 25 item 8: the class head's classes of the shipped model are SNOMED CT qualifier values
    (dciodvfy knows SCT); a user's own class name gets the local 99SONOSEG code, declared in
    CodingSchemeIdentificationSequence (dciodvfy still warns that it does not know that designator)."""
    import dciodvfy_check as dv

    from sonoseg.outputs.seg_class_codes import CLASS_CODES

    name = "US1_UNCR.dcm"
    src = header(name)
    m = ellipse_masks(src.Rows, src.Columns, 1)[0]
    finding = {"class": cls, "class_probabilities": {cls: 0.8}, "lesion_found": True, "source": "both"}
    ds = pydicom.dcmread(write_dicom_seg(dicom_testfile(name), m, tmp_path / "c.dcm", SegWriteOptions(finding=finding)))
    (mod,) = ds.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence
    assert mod.CodingSchemeDesignator == scheme and ds.SegmentSequence[0].SegmentDescription.startswith(
        f"class head: {cls} (p=0.80)")
    if scheme == "SCT":
        assert mod.CodeValue == CLASS_CODES[cls].value and "CodingSchemeIdentificationSequence" not in ds
    else:
        assert mod.CodeValue == cls and ds.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == scheme
    if dv.available():
        scheme_warnings = [w for w in dv.seg_problems(tmp_path / "c.dcm")[1] if "Coding Scheme" in w]
        assert scheme_warnings == ([] if scheme == "SCT" else
                                   ["Warning - Unrecognized defined term <99SONOSEG> for value 1 of attribute "
                                    "<Coding Scheme Designator>"] * 2)


@pytest.mark.parametrize("name", ["color-pl.dcm", "color-px.dcm"])
def test_retired_us_sop_class_and_acr_nema_dates_get_a_seg(tmp_path, name):
    """pydicom-data's color-pl/px: retired Ultrasound Image Storage (1.2.840.10008.5.1.4.1.1.6) with
    dates/times as 1994.11.05 / 11:20:00. highdicom has no IOD for the class: the SEG is built as for
    its successor, references the instance by its real class, and carries the study date/time in the
    current form. (dciodvfy: only what the source itself has, its illegal 999.999 UIDs; checked in
    tests/test_seg_conformance.py.)"""
    src = header(name)
    assert src.SOPClassUID == "1.2.840.10008.5.1.4.1.1.6" and src.StudyDate == "1994.11.05"
    m = ellipse_masks(src.Rows, src.Columns, 1)[0]
    out = write_dicom_seg(dicom_testfile(name), m, tmp_path / "seg.nocheck")  # not .dcm: see the docstring
    ds = pydicom.dcmread(out)
    assert ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPClassUID == src.SOPClassUID
    assert {s.ReferencedSOPClassUID for item in ds.PerFrameFunctionalGroupsSequence
            for s in item.DerivationImageSequence[0].SourceImageSequence} == {src.SOPClassUID}
    assert (ds.StudyDate, ds.StudyTime) == ("19941105", "112000")
    assert np.array_equal(read_dicom_seg(out)[0], m)


def test_suspicious_flag_leads_the_segment_description(tmp_path):
    """Issue 22 item 4: a lesion the malignancy operating point flags says so first in its SEG (the arg-max
    class may be benign); an unflagged one does not mention it."""
    import dciodvfy_check as dv

    name = "US1_UNCR.dcm"
    src = header(name)
    m = ellipse_masks(src.Rows, src.Columns, 1)[0]
    op = {"class": "malignant", "threshold": 0.16}
    flagged = {"class": "benign", "class_probabilities": {"benign": 0.7, "malignant": 0.21, "normal": 0.09},
               "lesion_found": True, "source": "both", "suspicious": True, "suspicious_threshold": op}
    ds = pydicom.dcmread(write_dicom_seg(dicom_testfile(name), m, tmp_path / "s.dcm", SegWriteOptions(finding=flagged)))
    text = ds.SegmentSequence[0].SegmentDescription
    assert text.startswith("SUSPICIOUS malignant p=0.21>=0.16; class head: benign (p=0.70)") and len(text) <= 64
    if dv.available():
        assert dv.seg_problems(tmp_path / "s.dcm")[0] == []
    calm = dict(flagged, suspicious=False)
    ds = pydicom.dcmread(write_dicom_seg(dicom_testfile(name), m, tmp_path / "n.dcm", SegWriteOptions(finding=calm)))
    assert ds.SegmentSequence[0].SegmentDescription.startswith("class head: benign (p=0.70)")
