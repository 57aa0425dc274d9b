"""dciodvfy on the SEGs that the shipped breast model writes (class head included) for the shipped sample
DICOMs and pydicom-data's ultrasound files (issue 25 item 8, issue 27): 0 errors, and no warning that
sonoseg's own content causes. A warning that the source image itself gets from dciodvfy (e.g. empty
Study Date / Time / ID of an anonymised file, which the SEG must copy) is the source's and is allowed;
tests/README name them."""

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


def own_warnings(seg: Path, source: Path) -> list[str]:
    """dciodvfy warnings of the SEG that the source image does not get itself."""
    from_source = set(dv.seg_problems(source)[1])
    return [w for w in dv.seg_problems(seg)[1] if w not in from_source]


def test_shipped_model_segs_have_no_own_warnings(tmp_path):
    if not dv.available():
        pytest.skip("dciodvfy not installed (apt-get install dicom3tools)")
    inputs = sorted(sample_dicom_dir().glob("*.dcm")) + [dicom_testfile(n) for n in PYDICOM_DATA_US]
    res = CliRunner().invoke(app, ["predict", *map(str, inputs), "--out", str(tmp_path / "pred"), "--threads", "1",
                                   "--no-domain-check", "--no-progress"])
    assert res.exit_code == 0, res.output
    results = json.loads((tmp_path / "pred" / "results.json").read_text())["results"]
    assert len(results) == len(inputs) and all(r.get("seg") for r in results)
    problems = {}
    for r in results:
        seg, src = Path(r["seg"]), Path(r["input"])
        errors = dv.seg_problems(seg)[0]
        own = own_warnings(seg, src)
        if errors or own:
            problems[src.name] = errors + own
        mods = [m for s in pydicom.dcmread(seg, stop_before_pixels=True).SegmentSequence
                for m in s.SegmentedPropertyTypeCodeSequence[0].get("SegmentedPropertyTypeModifierCodeSequence", [])]
        assert mods and all(m.CodingSchemeDesignator == "SCT" for m in mods)  # the class, SNOMED CT coded
    assert problems == {}
