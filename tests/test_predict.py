"""`sonoseg predict` on real vendor ultrasound DICOMs (pydicom-data), images and bad files.

A tiny untrained model is enough here: what is checked is geometry, streaming, outputs and the SEG,
not accuracy (accuracy is covered by the evaluation of the shipped model)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch

from conftest import dicom_testfile
from sonoseg.infer.options import ModelOptions, PredictOptions


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    from sonoseg.config import load_config
    from sonoseg.models import create_model_from_config
    from sonoseg.train.checkpoint import save_checkpoint

    cfg = load_config(None, ["model.name=unet", "model.params={base_channels: 4, depth: 2}", "preprocess.size=[64, 64]"])
    torch.manual_seed(0)
    model = create_model_from_config(cfg.model)
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "tiny.pt", config=cfg, model_state=model.state_dict())


VENDOR = ["US1_UNCR.dcm", "US1_J2KR.dcm", "OBXXXX1A.dcm", "OBXXXX1A_2frame.dcm", "OBXXXX1A_rle.dcm",
          "OBXXXX1A_rle_2frame.dcm"]


@pytest.mark.parametrize("name", VENDOR)
def test_predict_vendor_dicom_geometry_and_seg(name, tiny_ckpt, tmp_path):
    import highdicom as hd

    from sonoseg.infer.run import predict_inputs

    src = dicom_testfile(name)
    ds = pydicom.dcmread(src, stop_before_pixels=True)
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    payload = predict_inputs([src], tmp_path, PredictOptions(model=tiny_ckpt, threads=1), log=lambda m: None)
    r = payload["results"][0]
    assert r["ok"], r["error"]
    assert r["frames"] == frames
    if frames == 1:
        import cv2

        mask = cv2.imread(r["mask"], cv2.IMREAD_UNCHANGED)
        assert mask.shape == (ds.Rows, ds.Columns)
    else:
        import nibabel as nib

        nii = nib.load(r["mask"])
        assert nii.shape == (ds.Columns, ds.Rows, 1, frames)  # time is the 4th NIfTI axis, not z
        assert nii.header.get_xyzt_units() == ("mm", "msec")
        assert nii.header.get_zooms()[3] == pytest.approx(float(ds.get("FrameTime") or 0.0))
    seg = hd.seg.segread(r["seg"])
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert (seg.Rows, seg.Columns) == (ds.Rows, ds.Columns)
    refs = {i.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence for i in s.ReferencedInstanceSequence}
    assert refs == {ds.SOPInstanceUID}
    meas = json.loads(Path(r["measurements"]).read_text())
    assert meas["unit"] in ("mm", "px")
    assert [f["index"] for f in meas["frames"]] == list(range(frames))  # one shape: a list of frames
    if frames > 1 and "FrameTime" not in ds:  # these vendor cines carry no frame timing
        assert meas["frame_time_ms"] is None and meas["frames"][1]["time_ms"] is None
    assert Path(r["overlay"]).is_file()


def test_predict_skips_bad_files_and_finishes_the_rest(tiny_ckpt, tmp_path):
    from sonoseg.infer.run import predict_inputs

    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "garbage.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x01\x02" * 10)
    (inp / "notes.png").write_bytes(b"not a png")
    good = dicom_testfile("US1_UNCR.dcm")
    (inp / "good.dcm").write_bytes(Path(good).read_bytes())
    payload = predict_inputs([inp, tmp_path / "missing.dcm"], tmp_path / "out",
                             PredictOptions(model=tiny_ckpt, threads=1), log=lambda m: None)
    by = {Path(r["input"]).name: r for r in payload["results"]}
    assert by["good.dcm"]["ok"]
    assert payload["n_ok"] == 1 and payload["n_failed"] >= 2
    for r in payload["results"]:
        if not r["ok"]:
            assert r["error"] and "\n" not in r["error"]
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {"input", "ok", "error", "mask", "overlay", "measurements", "seg"} <= set(saved["results"][0])


def test_predict_cli_exit_codes(tiny_ckpt, tmp_path):
    from typer.testing import CliRunner

    from sonoseg.cli.main import app

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    res = CliRunner().invoke(app, ["predict", str(bad), "--model", str(tiny_ckpt), "--out", str(tmp_path / "o"), "--no-progress"])
    assert res.exit_code != 0
    res = CliRunner().invoke(app, ["predict", str(dicom_testfile("OBXXXX1A.dcm")), str(bad), "--model", str(tiny_ckpt),
                                   "--out", str(tmp_path / "o2"), "--no-progress"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["predict", str(dicom_testfile("OBXXXX1A.dcm")), str(bad), "--model", str(tiny_ckpt),
                                   "--out", str(tmp_path / "o3"), "--no-progress", "--strict"])
    assert res.exit_code != 0


def test_predict_png_and_nifti(tiny_ckpt, tmp_path):
    import cv2
    import nibabel as nib

    from sonoseg.infer.run import predict_inputs

    img = (np.random.default_rng(0).random((70, 90)) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    nib.save(nib.Nifti1Image(np.random.default_rng(1).random((50, 40, 3)).astype(np.float32), np.diag([0.3, 0.4, 2, 1])),
             str(tmp_path / "v.nii.gz"))
    payload = predict_inputs([tmp_path / "a.png", tmp_path / "v.nii.gz"], tmp_path / "out",
                             PredictOptions(model=tiny_ckpt, threads=1), log=lambda m: None)
    r_png, r_nii = payload["results"]
    assert r_png["ok"] and cv2.imread(r_png["mask"], 0).shape == (70, 90)
    assert r_nii["ok"] and nib.load(r_nii["mask"]).shape == (50, 40, 3)
    np.testing.assert_allclose(nib.load(r_nii["mask"]).affine, np.diag([0.3, 0.4, 2, 1]))


def test_reused_predictor_is_domain_checked_against_its_own_model(tiny_model, tmp_path, dicom_file):
    """predict_inputs(predictor=P) without model=: the domain check uses P's model file, not the shipped
    default's statistics with P's network (a custom model in `sonoseg serve` / `sonoseg listen` failed
    every input with a shape mismatch)."""
    from sonoseg.infer.predictor import Predictor
    from sonoseg.infer.run import predict_inputs

    p = Predictor.from_path(tiny_model, ModelOptions(backend="torch", threads=1))
    assert p.path == tiny_model
    r = predict_inputs([dicom_file("US1_J2KR.dcm")], tmp_path, predictor=p, log=lambda m: None)["results"][0]
    assert r["status"] == "ok" and r["seg"], r["error"]


def test_segs_of_a_series_of_stills_form_one_seg_series(tiny_ckpt, tmp_path):
    """Loose single-frame images: one SEG per image, the SEGs of one source series in one SEG series
    (numbered as their images), another source series in another SEG series."""
    from sonoseg.infer.run import predict_inputs

    srcs = [dicom_testfile(n) for n in ("OBXXXX1A.dcm", "OBXXXX1A_rle.dcm", "US1_UNCR.dcm")]
    heads = [pydicom.dcmread(s, stop_before_pixels=True) for s in srcs]
    assert heads[0].SeriesInstanceUID == heads[1].SeriesInstanceUID != heads[2].SeriesInstanceUID
    payload = predict_inputs(srcs, tmp_path, PredictOptions(model=tiny_ckpt, threads=1, domain=False),
                             log=lambda m: None)
    segs = [pydicom.dcmread(r["seg"], stop_before_pixels=True) for r in payload["results"]]
    assert segs[0].SeriesInstanceUID == segs[1].SeriesInstanceUID != segs[2].SeriesInstanceUID
    assert len({s.SOPInstanceUID for s in segs}) == 3
    for seg, h in zip(segs, heads):
        ref = seg.ReferencedSeriesSequence[0]
        assert ref.SeriesInstanceUID == h.SeriesInstanceUID
        assert [i.ReferencedSOPInstanceUID for i in ref.ReferencedInstanceSequence] == [h.SOPInstanceUID]
        assert int(seg.InstanceNumber) == int(h.get("InstanceNumber") or 1)


def test_images_of_one_series_segmented_in_two_runs_share_one_seg_series(tiny_ckpt, tmp_path):
    """A study that arrives in two batches (two runs) adds to the same SEG series; another threshold (or
    model) makes a series of its own; the SEG instances themselves stay distinct."""
    from sonoseg.infer.run import predict_inputs

    srcs = [dicom_testfile(n) for n in ("OBXXXX1A.dcm", "OBXXXX1A_rle.dcm")]
    quiet = PredictOptions(model=tiny_ckpt, threads=1, domain=False)
    first = predict_inputs(srcs[:1], tmp_path / "a", quiet, log=lambda m: None)["results"][0]
    second = predict_inputs(srcs[1:], tmp_path / "b", quiet, log=lambda m: None)["results"][0]
    other = predict_inputs(srcs[1:], tmp_path / "c", replace(quiet, threshold=0.7), log=lambda m: None)["results"][0]
    a, b, c = (pydicom.dcmread(r["seg"], stop_before_pixels=True) for r in (first, second, other))
    src = pydicom.dcmread(srcs[0], stop_before_pixels=True)
    assert a.SeriesInstanceUID == b.SeriesInstanceUID != c.SeriesInstanceUID
    assert a.SeriesInstanceUID != src.SeriesInstanceUID and a.SOPInstanceUID != b.SOPInstanceUID


def test_overlay_capture_only_when_asked_and_equal_to_the_overlay_png(tiny_ckpt, tmp_path):
    import cv2

    from sonoseg.infer.run import predict_inputs

    srcs = [dicom_testfile(n) for n in ("OBXXXX1A.dcm", "OBXXXX1A_rle_2frame.dcm")]
    off = predict_inputs(srcs[:1], tmp_path / "off", PredictOptions(model=tiny_ckpt, threads=1, domain=False),
                         log=lambda m: None)
    assert off["results"][0]["overlay_sc"] is None and not list((tmp_path / "off").glob("*.overlay.dcm"))
    on = predict_inputs(srcs, tmp_path / "on", PredictOptions(model=tiny_ckpt, threads=1, domain=False, overlay_sc=True),
                        log=lambda m: None)
    caps = []
    for r, s in zip(on["results"], srcs):
        assert r["status"] == "ok", r
        sc = pydicom.dcmread(r["overlay_sc"])
        png = cv2.cvtColor(cv2.imread(r["overlay"], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert np.array_equal(sc.pixel_array, png)
        assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == pydicom.dcmread(s, stop_before_pixels=True).SOPInstanceUID
        caps.append(sc)
    cine_ref = caps[1].SourceImageSequence[0]
    chosen = json.loads(Path(on["results"][1]["measurements"]).read_text())["chosen_frame"]
    assert int(cine_ref.ReferencedFrameNumber) == chosen + 1  # the frame the overlay shows
    assert caps[0].SeriesInstanceUID == caps[1].SeriesInstanceUID  # one source series: one capture series
    seg = pydicom.dcmread(on["results"][0]["seg"], stop_before_pixels=True)
    assert seg.SeriesInstanceUID != caps[0].SeriesInstanceUID  # SEGs and pictures in series of their own
