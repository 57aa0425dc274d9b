"""dciodvfy on the SEGs that the shipped breast model writes (class head included) for the shipped sample
DICOMs and pydicom-data's ultrasound files (issue 25 item 8, issue 27): no error and no warning that
sonoseg's own content causes. What the source image itself gets from dciodvfy and the SEG must copy
(empty Study Date / Time / ID of an anonymised file, a retired Person Name form, the illegal UIDs of
``color-pl.dcm`` that the SEG references) is the source's; the README lists them. The sources that
have no such problem of their own give SEGs with 0 errors."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from conftest import dicom_testfile
from typer.testing import CliRunner

import dciodvfy_check as dv
from sonoseg.cli.main import app
from sonoseg.infer.default_model import sample_dicom_dir

PYDICOM_DATA_US = ["US1_UNCR.dcm", "US1_UNCI.dcm", "US1_J2KR.dcm", "US1_J2KI.dcm", "OBXXXX1A.dcm",
                   "OBXXXX1A_2frame.dcm", "OBXXXX1A_expb.dcm", "OBXXXX1A_expb_2frame.dcm", "OBXXXX1A_rle.dcm",
                   "OBXXXX1A_rle_2frame.dcm", "color-pl.dcm", "color-px.dcm", "gdcm-US-ALOKA-16.dcm",
                   "JPGLosslessP14SV1_1s_1f_8b.dcm"]


@pytest.mark.slow  # the shipped model on 17 files
def test_shipped_model_segs_have_no_own_warnings(tmp_path_factory):
    if not dv.available():
        pytest.skip("dciodvfy not installed (apt-get install dicom3tools)")
    # not tmp_path: the autouse check (conftest) knows no source and would count color-pl's own UIDs
    tmp_path = tmp_path_factory.mktemp("conformance")
    inputs = sorted(sample_dicom_dir().glob("*.dcm")) + [dicom_testfile(n) for n in PYDICOM_DATA_US]
    res = CliRunner().invoke(app, ["predict", *map(str, inputs), "--out", str(tmp_path / "pred"), "--threads", "1",
                                   "--no-domain-check", "--no-progress"])
    assert res.exit_code == 0, res.output
    results = json.loads((tmp_path / "pred" / "results.json").read_text())["results"]
    assert len(results) == len(inputs) and all(r.get("seg") for r in results)
    problems, copied = {}, set()
    for r in results:
        seg, src = Path(r["seg"]), Path(r["input"])
        errors, warnings = dv.own_problems(seg, src)
        if errors or warnings:
            problems[src.name] = errors + warnings
        if not dv.seg_problems(src)[0]:  # a source without errors of its own: a SEG without errors
            assert dv.seg_problems(seg)[0] == [], src.name
        copied |= {p.split(" - ", 1)[1] for p in sum(dv.seg_problems(seg), [])}
        mods = [m for s in pydicom.dcmread(seg, stop_before_pixels=True).SegmentSequence
                for m in s.SegmentedPropertyTypeCodeSequence[0].get("SegmentedPropertyTypeModifierCodeSequence", [])]
        assert mods and all(m.CodingSchemeDesignator == "SCT" for m in mods)  # the class, SNOMED CT coded
    assert problems == {}
    print("copied from the sources:", *sorted(copied), sep="\n  ")  # for the README list (pytest -s)
