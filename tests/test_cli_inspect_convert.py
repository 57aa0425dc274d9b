"""``sonoseg inspect`` and ``sonoseg convert`` through typer's CliRunner."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest
from conftest import dicom_testfile
from typer.testing import CliRunner

from sonoseg.cli.main import app

runner = CliRunner()

REQUIRED = {"path", "ok", "error", "modality", "rows", "columns", "frames", "photometric", "transfer_syntax", "pixel_spacing_mm"}


@pytest.fixture
def mixed_folder(tmp_path):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    shutil.copy(dicom_testfile("gdcm-US-ALOKA-16.dcm"), d / "aloka.dcm")
    shutil.copy(dicom_testfile("color3d_jpeg_baseline.dcm"), d / "sub" / "CINE0001")  # no extension
    shutil.copy(dicom_testfile("CT_small.dcm"), d / "sub" / "ct.dcm")
    (d / "sub" / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    return d


def _json(result) -> list[dict]:
    return json.loads(result.stdout)


def test_inspect_json_rows(mixed_folder):
    result = runner.invoke(app, ["inspect", str(mixed_folder), "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["path"].split("/")[-1]: r for r in _json(result)}
    assert set(rows) == {"aloka.dcm", "CINE0001", "ct.dcm", "broken.dcm"}
    for r in rows.values():
        assert REQUIRED <= set(r)
    cine = rows["CINE0001"]
    assert cine["ok"] and cine["frames"] == 120 and (cine["rows"], cine["columns"]) == (480, 640)
    assert cine["photometric"] == "YBR_FULL_422" and cine["transfer_syntax"] == "1.2.840.10008.1.2.4.50"
    assert cine["pixel_spacing_mm"] == pytest.approx([0.5104970559, 0.5104970559])
    assert rows["aloka.dcm"]["spacing_source"] == "SequenceOfUltrasoundRegions"
    ct = pydicom.dcmread(dicom_testfile("CT_small.dcm"), stop_before_pixels=True)
    assert rows["ct.dcm"]["pixel_spacing_mm"] == [float(ct.PixelSpacing[0]), float(ct.PixelSpacing[1])]
    assert rows["ct.dcm"]["modality"] == "CT"
    broken = rows["broken.dcm"]
    assert broken["ok"] is False and broken["error"] and broken["pixel_spacing_mm"] is None
    assert "1 of 4" in result.stderr


def test_inspect_strict_and_all_bad(mixed_folder, tmp_path):
    assert runner.invoke(app, ["inspect", str(mixed_folder), "--strict", "--json"]).exit_code == 1
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.dcm").write_text("not dicom")
    result = runner.invoke(app, ["inspect", str(bad)])
    assert result.exit_code == 1
    assert "not a DICOM file" in result.stderr


def test_inspect_table(mixed_folder):
    result = runner.invoke(app, ["inspect", str(mixed_folder / "aloka.dcm")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "aloka.dcm" in result.stdout and "PALETTE" in result.stdout and "0.3827" in result.stdout
    assert "US regions" in result.stdout


def test_inspect_missing_and_empty(tmp_path, mixed_folder):
    result = runner.invoke(app, ["inspect", str(tmp_path / "nope")])
    assert result.exit_code == 1 and "no such file" in result.stderr
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["inspect", str(tmp_path / "empty")])
    assert result.exit_code == 1 and "empty folder" in result.stderr
    # one bad argument among good ones is reported as a row, the command still succeeds
    result = runner.invoke(app, ["inspect", str(tmp_path / "nope"), str(mixed_folder / "aloka.dcm"), "--json"])
    assert result.exit_code == 0
    rows = {r["path"]: r for r in _json(result)}
    assert rows[str(tmp_path / "nope")]["ok"] is False and rows[str(mixed_folder / "aloka.dcm")]["ok"] is True


def test_convert_both_directions(tmp_path):
    aff = np.array([[0.0, 0.0, 2.0, -30.0], [-0.8, 0.0, 0.0, 40.0], [0.0, -0.8, 0.0, 12.0], [0, 0, 0, 1]])  # sagittal
    data = np.random.default_rng(0).integers(0, 4000, size=(6, 5, 4)).astype(np.uint16)
    nib.save(nib.Nifti1Image(data, aff), tmp_path / "vol.nii.gz")
    r1 = runner.invoke(app, ["convert", str(tmp_path / "vol.nii.gz"), str(tmp_path / "dcm"), "--modality", "MR"])
    assert r1.exit_code == 0, r1.output
    files = sorted((tmp_path / "dcm").iterdir())
    assert len(files) == 4 and pydicom.dcmread(files[0]).Modality == "MR"
    r2 = runner.invoke(app, ["convert", str(tmp_path / "dcm"), str(tmp_path / "back.nii")])
    assert r2.exit_code == 0, r2.output
    back = nib.load(tmp_path / "back.nii")
    np.testing.assert_allclose(back.affine, aff, atol=1e-4)
    np.testing.assert_array_equal(np.asanyarray(back.dataobj), data)
    # existing output is not overwritten silently
    r3 = runner.invoke(app, ["convert", str(tmp_path / "dcm"), str(tmp_path / "back.nii")])
    assert r3.exit_code == 2 and "exists" in r3.stderr
    assert runner.invoke(app, ["convert", str(tmp_path / "dcm"), str(tmp_path / "back.nii"), "--overwrite"]).exit_code == 0


def test_convert_rejects_wrong_targets(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4)), tmp_path / "a.nii")
    r = runner.invoke(app, ["convert", str(tmp_path / "a.nii"), str(tmp_path / "b.nii.gz")])
    assert r.exit_code == 2 and "output folder" in r.stderr
    r = runner.invoke(app, ["convert", str(dicom_testfile("emri_small.dcm")), str(tmp_path / "out")])
    assert r.exit_code == 2 and ".nii" in r.stderr
    (tmp_path / "empty").mkdir()
    r = runner.invoke(app, ["convert", str(tmp_path / "empty"), str(tmp_path / "x.nii.gz")])
    assert r.exit_code == 2 and "no DICOM files" in r.stderr
