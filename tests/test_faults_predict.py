"""Faults and hostile input in `predict` (issue 15): every defect of the fault trial has a test here.

A tiny untrained model is enough: what is checked is what gets refused, flagged, written and listed.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest

from conftest import dicom_testfile

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny(tiny_model) -> Path:
    return tiny_model


def _predict(inputs, out, tiny, **kw):
    from sonoseg.infer.options import PredictOptions
    from sonoseg.infer.run import predict_inputs

    return predict_inputs([str(i) for i in inputs], out, PredictOptions(model=tiny, threads=1, **kw), log=lambda m: None)


def _variant(name: str, out: Path, **changes) -> Path:
    ds = pydicom.dcmread(dicom_testfile(name))
    for k, v in changes.items():
        if v is None:
            delattr(ds, k)
        else:
            setattr(ds, k, v)
    ds.save_as(out)
    return out


def _set_region(ds, dx, dy):
    ds.SequenceOfUltrasoundRegions[0].PhysicalDeltaX = dx
    ds.SequenceOfUltrasoundRegions[0].PhysicalDeltaY = dy


# -- 1. memory bombs --------------------------------------------------------------------------------
def test_anisotropic_calibration_is_dropped_with_a_warning(tiny, tmp_path):
    ds = pydicom.dcmread(dicom_testfile("OBXXXX1A.dcm"))
    _set_region(ds, 1e-5, 10.0)
    ds.save_as(tmp_path / "aniso.dcm")
    r = _predict([tmp_path / "aniso.dcm"], tmp_path / "out", tiny, write_seg=False)["results"][0]
    assert r["status"] == "ok", r["error"]
    assert any("calibration" in w and "dropped" in w for w in r["warnings"])
    meas = json.loads(Path(r["measurements"]).read_text())
    assert meas["unit"] == "px" and meas["pixel_spacing_mm"] is None


def test_measure_mask_bounds_chord_sampling_for_extreme_spacing():
    import tracemalloc

    from sonoseg.infer.measure import measure_mask

    mask = np.zeros((200, 200), np.uint8)
    mask[20:180, 30:170] = 1
    tracemalloc.start()
    out = measure_mask(mask, (1e-5, 100.0))  # the library function is still asked directly
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert out and peak < 64 * 2**20, f"peak {peak / 2**20:.0f} MiB"


def test_declared_giant_frame_is_refused_before_decoding(tmp_path):
    from sonoseg.errors import InputError
    from sonoseg.io import read_meta

    p = _variant("OBXXXX1A_rle.dcm", tmp_path / "bomb.dcm", Rows=60000, Columns=60000)
    with pytest.raises(InputError, match="exceeds the limit"):
        read_meta(p)


def test_budget_is_configurable(tmp_path, monkeypatch):
    from sonoseg.errors import InputError
    from sonoseg.io import read_meta

    p = dicom_testfile("OBXXXX1A_2frame.dcm")
    read_meta(p)
    monkeypatch.setenv("SONOSEG_MAX_PIXELS", "1000")
    with pytest.raises(InputError, match="SONOSEG_MAX_PIXELS"):
        read_meta(p)


# -- 2. disk full: every listed output exists, failed ones are reported per output -------------------
def _limit_file_size(limit: int):
    import resource

    def pre():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return pre


@pytest.mark.slow  # a subprocess: fresh interpreter and model load
def test_full_disk_reports_per_output_and_lists_only_written_files(tiny, tmp_path):
    src = dicom_testfile("OBXXXX1A.dcm")
    out = tmp_path / "out"
    code = ("import sys; from sonoseg.infer.run import predict_inputs; "
            "from sonoseg.infer.options import PredictOptions as O; "
            f"predict_inputs([{str(src)!r}], {str(out)!r}, O(model={str(tiny)!r}, threads=1))")
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          preexec_fn=_limit_file_size(12_000))
    assert proc.returncode == 0, proc.stderr[-2000:]
    payload = json.loads((out / "results.json").read_text())
    r = payload["results"][0]
    assert r["status"] == "partial" and r["output_errors"], r
    for k in ("mask", "overlay", "measurements", "seg"):
        if r[k]:
            assert Path(r[k]).is_file() and Path(r[k]).stat().st_size > 0, k
        else:
            assert k in r["output_errors"]
    assert any("too large" in v or "space" in v for v in r["output_errors"].values()), r["output_errors"]
    assert not [p for p in out.iterdir() if ".partial" in p.name or p.name.startswith(".sonoseg-tmp-")]
    listed = {Path(r[k]).name for k in ("mask", "overlay", "measurements", "seg") if r[k]}
    assert {p.name for p in out.iterdir()} - {"results.json", "results.jsonl"} == listed, "no half-written files"


def test_cli_maps_os_and_memory_errors_to_one_line(capsys):
    import typer

    from sonoseg.cli._common import handle_errors

    for exc, words in [(OSError(errno.EROFS, "Read-only file system", "/x/out"), "read-only"),
                       (OSError(errno.ENOSPC, "No space left on device"), "no space left"),
                       (MemoryError(), "out of memory"),
                       (OSError(errno.EACCES, "Permission denied", "/x"), "permission denied")]:
        @handle_errors
        def cmd():
            raise exc

        with pytest.raises(typer.Exit) as ei:
            cmd()
        assert ei.value.exit_code != 0
        err = capsys.readouterr().err
        assert words in err.lower() and "Traceback" not in err and "Error:" not in err.replace("error:", "")
        assert len(err.strip().splitlines()) == 1


def test_output_folder_that_is_a_file_gives_one_line(tiny, tmp_path):
    from typer.testing import CliRunner

    from sonoseg.cli.main import app

    blocker = tmp_path / "out"
    blocker.write_text("a file, not a folder")
    res = CliRunner().invoke(app, ["predict", str(dicom_testfile("OBXXXX1A.dcm")), "--model", str(tiny),
                                   "--out", str(blocker / "sub"), "--no-progress"])
    assert res.exit_code != 0 and res.exception is None or isinstance(res.exception, SystemExit)
    assert "Traceback" not in res.output


# -- 5. one output failing (SEG of a retired SOP class) keeps and lists the others -------------------
def test_seg_failure_keeps_other_outputs(tiny, tmp_path):
    # no Study Instance UID: the image reads, a SEG cannot attach to a study (a retired SOP Class, used
    # here before, now gets its SEG: sonoseg.outputs.seg_legacy)
    p = _variant("OBXXXX1A.dcm", tmp_path / "nostudy.dcm", StudyInstanceUID=None)
    r = _predict([p], tmp_path / "out", tiny)["results"][0]
    assert r["status"] == "partial" and r["ok"]
    assert "seg" in r["output_errors"] and r["seg"] is None
    for k in ("mask", "overlay", "measurements"):
        assert r[k] and Path(r[k]).is_file()
    listed = {Path(r[k]).name for k in ("mask", "overlay", "measurements")}
    on_disk = {p.name for p in (tmp_path / "out").iterdir()} - {"results.json", "results.jsonl"}
    assert on_disk == listed


# -- 6 + 7. journal, resume, temporary folder ------------------------------------------------------
def test_interrupted_batch_leaves_a_journal_and_resume_continues(tiny, tmp_path):
    a, b = dicom_testfile("OBXXXX1A.dcm"), dicom_testfile("US1_UNCR.dcm")
    out = tmp_path / "out"
    calls = []

    def stop_after_first(msg):
        calls.append(msg)
        raise KeyboardInterrupt

    from sonoseg.infer.options import PredictOptions
    from sonoseg.infer.run import predict_inputs

    with pytest.raises(KeyboardInterrupt):
        predict_inputs([a, b], out, PredictOptions(model=tiny, threads=1, write_seg=False), log=stop_after_first,
                       notify=lambda m: None)
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["status"] == "ok"
    partial = json.loads((out / "results.json").read_text())
    assert partial["complete"] is False and partial["n_inputs"] == 1
    assert not list(out.glob(".sonoseg-tmp-*")) and not list(out.glob("tmp*.npy"))
    first_mask = Path(json.loads(lines[0])["mask"])
    mtime = first_mask.stat().st_mtime_ns
    payload = _predict([a, b], out, tiny, write_seg=False, resume=True)
    assert payload["complete"] and payload["n_ok"] == 2 and payload["n_resumed"] == 1
    assert first_mask.stat().st_mtime_ns == mtime, "the finished input must not be redone"
    assert len((out / "results.jsonl").read_text().splitlines()) == 2


@pytest.mark.slow  # a subprocess: fresh interpreter and model load
def test_sigterm_removes_the_run_temp_folder(tiny, tmp_path):
    from sonoseg.io.us_wrap import UsWrapOptions, wrap_as_us_cine

    frames = (np.random.default_rng(0).random((300, 96, 128)) * 255).astype(np.uint8)
    cine = wrap_as_us_cine(frames, tmp_path / "cine.dcm", options=UsWrapOptions(seed_uid="t"))
    out = tmp_path / "out"
    code = ("from sonoseg.infer.run import predict_inputs; "
            "from sonoseg.infer.options import PredictOptions as O; "
            f"predict_inputs([{str(cine)!r}], {str(out)!r}, O(model={str(tiny)!r}, threads=1, batch_size=1, "
            "write_seg=False))")
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and not list(out.glob(".sonoseg-tmp-*/*.npy")) and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, "finished before it could be interrupted"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read().decode()
    assert proc.returncode != 0, err[-2000:]  # its stderr says where the SIGTERM landed, should this fail again
    assert not list(out.glob(".sonoseg-tmp-*")) and not list(out.rglob("*.npy"))
    assert "Traceback" not in err


def test_sigterm_swallowed_by_a_finaliser_still_ends_the_run_non_zero(tmp_path):
    """Python runs the SIGTERM handler wherever the main thread is; inside a __del__ its SystemExit is printed and
    ignored. The run then still ends with 128 + SIGTERM, and its temporary folder is gone (CI saw exit 0 once)."""
    import gc

    from sonoseg.io.safety import run_tempdir

    class Finalised:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, inside the finaliser

    with pytest.raises(SystemExit) as ex:
        with run_tempdir(tmp_path) as folder:
            Finalised()
            gc.collect()
            assert folder.is_dir()  # the run went on: the first SystemExit was swallowed
    assert ex.value.code == 128 + signal.SIGTERM
    assert not list(tmp_path.glob(".sonoseg-tmp-*"))
    assert signal.getsignal(signal.SIGTERM) is not None  # the previous handler is back


def test_stale_temp_folder_of_a_killed_run_is_removed(tiny, tmp_path):
    out = tmp_path / "out"
    stale = out / ".sonoseg-tmp-999999999-abc"
    stale.mkdir(parents=True)
    (stale / "x.masks.npy").write_bytes(b"0" * 10)
    _predict([dicom_testfile("OBXXXX1A.dcm")], out, tiny, write_seg=False)
    assert not stale.exists()


# -- 9. garbage must not come out as OK ------------------------------------------------------------
def _fails(tiny, tmp_path, path, words):
    r = _predict([path], tmp_path / "out", tiny, write_seg=False)["results"][0]
    assert r["status"] == "failed", f"{path.name}: reported {r['status']}"
    assert words in r["error"], r["error"]
    return r


def test_rows_halved_with_twice_the_data(tiny, tmp_path):
    ds = pydicom.dcmread(dicom_testfile("OBXXXX1A.dcm"))
    p = _variant("OBXXXX1A.dcm", tmp_path / "half.dcm", Rows=ds.Rows // 2)
    _fails(tiny, tmp_path, p, "inconsistent")


def test_samples_per_pixel_one_on_rgb(tiny, tmp_path):
    p = _variant("US1_UNCR.dcm", tmp_path / "spp.dcm", SamplesPerPixel=1)
    _fails(tiny, tmp_path, p, "SamplesPerPixel=1 contradicts")


@pytest.mark.parametrize("name", ["OBXXXX1A_2frame.dcm", "OBXXXX1A_rle_2frame.dcm"])
def test_number_of_frames_larger_than_present(tiny, tmp_path, name):
    p = _variant(name, tmp_path / "frames.dcm", NumberOfFrames=100)
    _fails(tiny, tmp_path, p, "NumberOfFrames")


def test_implausible_calibration_1e30_is_dropped(tiny, tmp_path):
    ds = pydicom.dcmread(dicom_testfile("OBXXXX1A.dcm"))
    _set_region(ds, 1e30, 1e30)
    ds.save_as(tmp_path / "huge.dcm")
    r = _predict([tmp_path / "huge.dcm"], tmp_path / "out", tiny, write_seg=False)["results"][0]
    assert r["status"] == "ok" and any("plausible" in w for w in r["warnings"])
    assert r["summary"]["unit"] == "px"


def test_rows_columns_swapped_is_flagged(tiny, tmp_path):
    ds = pydicom.dcmread(dicom_testfile("OBXXXX1A.dcm"))
    p = _variant("OBXXXX1A.dcm", tmp_path / "swap.dcm", Rows=ds.Columns, Columns=ds.Rows)
    r = _predict([p], tmp_path / "out", tiny, write_seg=False)["results"][0]
    assert r["status"] == "failed" or any("Rows/Columns" in w for w in r["warnings"]), r


def test_planar_configuration_contradicting_the_data(tiny, tmp_path):
    p = _variant("US1_UNCR.dcm", tmp_path / "planar.dcm", PlanarConfiguration=1)
    _fails(tiny, tmp_path, p, "PlanarConfiguration=1")


def test_genuine_planar_file_still_reads(tmp_path):
    from sonoseg.io import read_meta

    read_meta(dicom_testfile("color-pl.dcm"))  # real planar colour data must not be flagged


def test_nifti_full_of_nan_is_an_error(tiny, tmp_path):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.full((40, 30, 2), np.nan, np.float32), np.eye(4)), str(tmp_path / "nan.nii.gz"))
    _fails(tiny, tmp_path, tmp_path / "nan.nii.gz", "NaN")


# -- 10. no patient identifier on any stream or output ---------------------------------------------
PHI = {"PatientName": "DoeJane", "PatientID": "PID424242", "PatientBirthDate": "19700101",
       "OtherPatientIDs": "OPID777", "AccessionNumber": "ACC31337", "StudyID": "STUDY9911",
       "ReferringPhysicianName": "Dr^Whoever", "InstitutionName": "SecretClinic", "StudyDescription": "PrivateNote",
       "PatientAddress": "1 Hidden Lane", "OperatorsName": "OpZed"}


@pytest.mark.slow  # a subprocess: fresh interpreter and model load
def test_patient_identifiers_never_reach_logs_or_outputs(tiny, tmp_path):
    ds = pydicom.dcmread(dicom_testfile("OBXXXX1A.dcm"))
    for k, v in PHI.items():
        setattr(ds, k, v)
    src = tmp_path / "in" / "study.dcm"
    src.parent.mkdir()
    ds.save_as(src)
    bad = _variant("OBXXXX1A.dcm", tmp_path / "in" / "bad.dcm", PatientName="DoeJane", Rows=7)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1", PYTHONWARNINGS="always", COLUMNS="200")
    log = tmp_path / "run.log"
    proc = subprocess.run([sys.executable, "-m", "sonoseg", "--verbose", "--log-file", str(log), "predict", str(src),
                           str(bad), "--model", str(tiny), "--out", str(out), "--no-progress", "--threads", "1"],
                          env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    streams = proc.stdout + proc.stderr
    texts = {"stdout+stderr": streams, "log file": log.read_text()}
    assert "<redacted>" in streams + texts["log file"], "highdicom's PersonName warning must appear, scrubbed"
    for f in out.iterdir():
        if f.suffix != ".dcm":  # the SEG carries the Patient module by definition (same patient)
            texts[f.name] = f.read_bytes().decode("latin-1")
    for where, text in texts.items():
        for k, v in PHI.items():
            assert v not in text, f"{k} leaked into {where}"
    seg = pydicom.dcmread(next(out.glob("*.seg.dcm")))
    assert str(seg.PatientName) == "DoeJane"  # the derived object stays with its patient


def test_redaction_of_third_party_warnings():
    import warnings

    from sonoseg.redact import install, redact

    install()
    assert "DoeJane" not in redact("The string 'DoeJane' is unlikely to represent the intended person name")
    assert "Doe^Jane" not in redact("Invalid value for VR PN: Doe^Jane")
    with warnings.catch_warnings(record=True):
        pass
    import io
    import logging

    buf = io.StringIO()
    h = logging.StreamHandler(buf)
    lg = logging.getLogger("highdicom.seg.sop")
    lg.addHandler(h)
    try:
        lg.warning("value %r of Patient's Name", "DoeJane")
    finally:
        lg.removeHandler(h)
    assert "DoeJane" not in buf.getvalue() and "Patient" in buf.getvalue()


# -- smaller items ---------------------------------------------------------------------------------
def test_infinite_physical_delta_drops_calibration(tiny, tmp_path):
    ds = pydicom.dcmread(dicom_testfile("OBXXXX1A.dcm"))
    _set_region(ds, float("inf"), 0.01)
    ds.save_as(tmp_path / "inf.dcm")
    r = _predict([tmp_path / "inf.dcm"], tmp_path / "out", tiny, write_seg=False)["results"][0]
    assert r["status"] == "ok", r["error"]
    assert any("not finite" in w for w in r["warnings"])


@pytest.mark.parametrize("attr", ["PhotometricInterpretation", "SamplesPerPixel"])
def test_missing_photometric_or_samples_gives_a_reason(tiny, tmp_path, attr):
    p = _variant("OBXXXX1A.dcm", tmp_path / "m.dcm", **{attr: None})
    r = _fails(tiny, tmp_path, p, f"missing {attr}")
    assert "AttributeError" not in r["error"]


def _deep_sequence_file(path: Path, depth: int = 300) -> Path:
    from fuzz_corpus import deep_sequence_bytes

    path.write_bytes(deep_sequence_bytes(Path(dicom_testfile("OBXXXX1A.dcm")).read_bytes(), depth))
    return path


def test_deeply_nested_sequences_give_words(tiny, tmp_path):
    import threading

    p = _deep_sequence_file(tmp_path / "deep.dcm")
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)  # what a default interpreter has; pydicom recurses per nesting level
    try:
        r = _predict([p], tmp_path / "out", tiny, write_seg=False)["results"][0]
    finally:
        sys.setrecursionlimit(old)
    assert threading.active_count() >= 1
    if r["status"] == "failed":
        assert "RecursionError" not in r["error"] and "recursion" not in r["error"].lower(), r["error"]
        assert "nested too deeply" in r["error"]


def test_every_named_input_is_listed(tiny, tmp_path):
    (tmp_path / "x.dcm").mkdir()
    (tmp_path / "zero.dcm").write_bytes(b"")
    (tmp_path / "noext").write_bytes(b"")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "inner_zero.dcm").write_bytes(b"")
    (folder / "ok.dcm").write_bytes(Path(dicom_testfile("OBXXXX1A.dcm")).read_bytes())
    link = tmp_path / "dangling.dcm"
    link.symlink_to(tmp_path / "nowhere.dcm")
    named = [tmp_path / "x.dcm", tmp_path / "zero.dcm", tmp_path / "noext", folder, link, tmp_path / "missing.dcm"]
    payload = _predict(named, tmp_path / "out", tiny, write_seg=False)
    by = {Path(r["input"]).name: r for r in payload["results"]}
    assert "empty folder" in by["x.dcm"]["error"]
    assert "empty file" in by["zero.dcm"]["error"] and "empty file" in by["noext"]["error"]
    assert "empty file" in by["inner_zero.dcm"]["error"]
    assert by["ok.dcm"]["status"] == "ok"
    assert "broken link" in by["dangling.dcm"]["error"]
    assert "no such file" in by["missing.dcm"]["error"]
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["n_inputs"] == 7


def test_nifti_results_have_a_summary(tiny, tmp_path):
    import nibabel as nib

    vol = np.zeros((60, 50, 2), np.float32)
    vol[10:40, 10:30] = 200.0
    nib.save(nib.Nifti1Image(vol, np.diag([0.5, 0.5, 2.0, 1.0])), str(tmp_path / "v.nii.gz"))
    r = _predict([tmp_path / "v.nii.gz"], tmp_path / "out", tiny)["results"][0]
    assert r["status"] == "ok"
    s = r["summary"]
    assert {"max_structures_per_frame", "max_area", "max_diameter", "unit"} <= set(s) and s["unit"] == "mm"
    meas = json.loads(Path(r["measurements"]).read_text())
    assert s["max_structures_per_frame"] == max(len(x["structures"]) for x in meas["frames"])
