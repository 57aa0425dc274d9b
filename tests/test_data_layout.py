"""Dataset layout discovery (PNG, DICOM without extension, NIfTI masks), labels.csv column names,
validation report cases and the ``sonoseg validate`` CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import dicom_testfile
from sonoseg.data.layout import discover_dataset, file_stem, load_mask, read_labels
from sonoseg.data.validate import validate_dataset
from sonoseg.errors import InputError


def _img(h=48, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


def _mask(h=48, w=64, value=255):
    m = np.zeros((h, w), np.uint8)
    m[10:20, 12:30] = value
    return m


def _write(root: Path, stems, mask_stems=None, size=(48, 64)):
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    for i, s in enumerate(stems):
        cv2.imwrite(str(root / "images" / f"{s}.png"), _img(*size, seed=i))
    for s in stems if mask_stems is None else mask_stems:
        cv2.imwrite(str(root / "masks" / f"{s}.png"), _mask(*size))
    return root


@pytest.mark.parametrize(
    "header",
    [("image", "class", "group"), ("Case", "CLS", "Patient"), ("stem", "label", "patient_id"), ("Name", "Label", "Patient_ID")],
)
def test_discover_pairs_and_flexible_label_columns(tmp_path, header):
    root = _write(tmp_path / "ds", ["case 10", "case 2", "case 1"], mask_stems=["case 10", "case 1"])
    img_col, cls_col, grp_col = header
    (root / "labels.csv").write_text(
        f"{img_col},{cls_col},{grp_col},extra\ncase 1.png,benign,P7,x\nimages/case 2.png,malignant,,y\ncase 10,benign,P7,z\n"
    )
    samples = discover_dataset(root)
    assert [s.stem for s in samples] == ["case 1", "case 2", "case 10"]  # natural order
    by = {s.stem: s for s in samples}
    assert by["case 1"].image_path == root / "images" / "case 1.png"
    assert by["case 1"].mask_path == root / "masks" / "case 1.png"
    assert by["case 2"].mask_path is None
    assert (by["case 1"].cls, by["case 1"].group) == ("benign", "P7")
    assert (by["case 2"].cls, by["case 2"].group) == ("malignant", None)
    assert by["case 10"].group == "P7"
    with pytest.raises(InputError, match="case 2"):
        discover_dataset(root, require_masks=True)


def test_labels_without_image_column_is_an_input_error(tmp_path):
    p = tmp_path / "labels.csv"
    p.write_text("foo,class\na,b\n")
    with pytest.raises(InputError, match="labels.csv"):
        read_labels(p)
    q = tmp_path / "l2.csv"
    q.write_text("image\na.png\nb.nii.gz\n")
    lt = read_labels(q)
    assert lt.rows == {"a": (None, None), "b": (None, None)} and lt.class_column is None


def test_file_stem():
    assert file_stem("a/b/case 1.png") == "case 1"
    assert file_stem("vol.nii.gz") == "vol"
    assert file_stem("x.DCM") == "x"
    assert file_stem("1.2.840.10008.5.1.4") == "1.2.840.10008.5.1.4"  # UID names keep their dots
    assert file_stem("report.txt") == "report.txt"


def test_discover_structural_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        discover_dataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="images/"):
        discover_dataset(tmp_path / "empty")
    root = _write(tmp_path / "dup", ["a"])
    cv2.imwrite(str(root / "images" / "a.jpg"), _img())
    with pytest.raises(InputError, match="share the stem"):
        discover_dataset(root)


def test_dicom_images_with_png_and_nifti_masks(tmp_path):
    us = dicom_testfile("US1_J2KR.dcm")  # 480 x 640 RGB ultrasound, JPEG 2000
    mr = dicom_testfile("MR_small.dcm")  # 64 x 64, 16 bit
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    uid = "1.2.826.0.1.3680043.8.498.1"
    shutil.copy(us, root / "images" / uid)  # no extension, dots in the name
    shutil.copy(us, root / "images" / "us_raw.dcm")
    shutil.copy(mr, root / "images" / "mr.dcm")
    (root / "images" / "notes.txt").write_text("not an image")

    m_us = _mask(480, 640, 1)
    m_us[300:310, 400:500] = 1  # asymmetric, so a transpose or flip would be caught
    from sonoseg.io import write_nifti

    write_nifti(m_us, root / "masks" / f"{uid}.nii.gz")  # sonoseg convention ([y, x] array)
    nib.save(nib.Nifti1Image(m_us.astype(np.uint8), np.eye(4)), str(root / "masks" / "us_raw.nii"))  # numpy as is
    m_mr = _mask(64, 64, 255)[:, ::-1].copy()
    cv2.imwrite(str(root / "masks" / "mr.png"), m_mr)

    samples = discover_dataset(root, require_masks=True)
    assert [s.stem for s in samples] == [uid, "mr", "us_raw"]
    assert samples[0].image_path.name == uid and samples[0].mask_path.name == f"{uid}.nii.gz"

    np.testing.assert_array_equal(load_mask(root / "masks" / f"{uid}.nii.gz", (480, 640)), m_us)
    np.testing.assert_array_equal(load_mask(root / "masks" / "us_raw.nii", (480, 640)), m_us)
    np.testing.assert_array_equal(load_mask(root / "masks" / "mr.png"), m_mr)

    rep = validate_dataset(root)
    assert rep.ok, str(rep)
    assert [(p.kind, Path(p.path).name) for p in rep.problems] == [("ignored_file", "notes.txt")]
    assert rep.n_checked == 3

    write_nifti(np.zeros((470, 640), np.uint8), root / "masks" / f"{uid}.nii.gz")
    rep = validate_dataset(root)
    assert [(p.kind, p.stem) for p in rep.errors] == [("size_mismatch", uid)]
    assert "470x640" in rep.errors[0].message and "480x640" in rep.errors[0].message


def test_validation_report_lists_each_problem(tmp_path):
    root = _write(tmp_path / "ds", ["ok", "nomask", "big", "grey", "empty", "badimg", "badmask", "ones"],
                  mask_stems=["ok", "big", "grey", "empty", "badimg", "badmask", "ones", "orphan"])
    cv2.imwrite(str(root / "masks" / "big.png"), _mask(50, 64))
    grey = _mask()
    grey[0, 0] = 128
    cv2.imwrite(str(root / "masks" / "grey.png"), grey)
    cv2.imwrite(str(root / "masks" / "empty.png"), np.zeros((48, 64), np.uint8))
    (root / "images" / "badimg.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    (root / "masks" / "badmask.png").write_bytes(b"not a png at all")
    cv2.imwrite(str(root / "masks" / "ones.png"), _mask(value=1))  # 0/1 is binary too
    (root / "labels.csv").write_text("image,class\nok,a\nok,a\nghost,b\n")

    rep = validate_dataset(root)
    got = sorted((p.severity, p.kind, p.stem) for p in rep.problems)
    assert got == sorted([
        ("error", "missing_mask", "nomask"),
        ("error", "extra_mask", "orphan"),
        ("error", "size_mismatch", "big"),
        ("error", "non_binary_mask", "grey"),
        ("warning", "empty_mask", "empty"),
        ("error", "unreadable_image", "badimg"),
        ("error", "unreadable_mask", "badmask"),
        ("warning", "labels_unknown_image", "ghost"),
        ("warning", "labels_duplicate_row", "ok"),
        *[("warning", "labels_missing_image", s) for s in ["nomask", "big", "grey", "empty", "badimg", "badmask", "ones"]],
    ])
    assert not rep.ok and len(rep.errors) == 6
    grey_msg = next(p.message for p in rep.problems if p.kind == "non_binary_mask")
    assert "128" in grey_msg
    text = str(rep)
    assert "INVALID" in text and "badmask.png" in text and "50x64" in text
    assert rep.n_images == 8 and rep.n_masks == 8
    # names-only mode skips decoding: only the structural findings remain
    fast = validate_dataset(root, check_pixels=False)
    assert {p.kind for p in fast.errors} == {"missing_mask", "extra_mask"}


def test_validation_multiclass_labels(tmp_path):
    root = _write(tmp_path / "ds", ["a", "b", "c"])
    lab = np.zeros((48, 64), np.uint8)
    lab[5:10, 5:10] = 1
    lab[20:30, 20:30] = 2
    cv2.imwrite(str(root / "masks" / "a.png"), lab)
    lab3 = lab.copy()
    lab3[0, 0] = 3
    cv2.imwrite(str(root / "masks" / "b.png"), lab3)
    # c keeps its 0/255 mask: label 255 is out of range for 3 classes
    rep = validate_dataset(root, classes=3)
    assert sorted((p.kind, p.stem) for p in rep.problems) == [("label_out_of_range", "b"), ("label_out_of_range", "c")]
    assert "3" in rep.problems[0].message
    # the same label map is not binary
    rep1 = validate_dataset(root, classes=1)
    assert sorted(p.stem for p in rep1.errors) == ["a", "b"]


def test_cli_validate(tmp_path):
    from sonoseg.cli.main import app

    runner = CliRunner()
    good = _write(tmp_path / "good", ["a", "b"])
    res = runner.invoke(app, ["validate", str(good)])
    assert res.exit_code == 0, res.output
    assert "OK" in res.output

    bad = _write(tmp_path / "bad", ["a", "b"], mask_stems=["a"])
    out_json = tmp_path / "rep.json"
    res = runner.invoke(app, ["validate", str(bad), "--json", str(out_json)])
    assert res.exit_code == 1
    assert "missing_mask" in res.output and "INVALID" in res.output
    data = json.loads(out_json.read_text())
    assert data["ok"] is False and data["problems"][0]["stem"] == "b"

    res = runner.invoke(app, ["validate", str(tmp_path / "nowhere")])
    assert res.exit_code == 2


def test_load_mask_classes(tmp_path):
    lab = np.zeros((20, 30), np.uint8)
    lab[2:5, 3:9] = 2
    lab[10:15, 10:20] = 1
    cv2.imwrite(str(tmp_path / "m.png"), lab)
    np.testing.assert_array_equal(load_mask(tmp_path / "m.png"), lab)
    np.testing.assert_array_equal(load_mask(tmp_path / "m.png", classes=1), (lab > 0).astype(np.uint8))
    got = load_mask(tmp_path / "m.png", classes=3)
    assert got.dtype == np.int64 and np.array_equal(got, lab)
    with pytest.raises(InputError, match="label 2"):
        load_mask(tmp_path / "m.png", classes=2)
    cv2.imwrite(str(tmp_path / "b.png"), (lab > 0).astype(np.uint8) * 255)
    np.testing.assert_array_equal(load_mask(tmp_path / "b.png", classes=1), (lab > 0).astype(np.uint8))
