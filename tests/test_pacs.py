"""sonoseg.pacs against a real Orthanc (Debian packages orthanc + orthanc-dicomweb, started by the test
session on loopback ports): find, pull, push and listen over DICOMweb and DIMSE, with real vendor
ultrasound files (pydicom-data) and sonoseg's shipped model."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import cv2
import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from conftest import dicom_testfile

pytest.importorskip("pynetdicom", reason="pip install -e '.[pacs]'")
pytest.importorskip("dicomweb_client", reason="pip install -e '.[pacs]'")

from sonoseg.errors import ConfigError, PacsError  # noqa: E402
from sonoseg.pacs import dicomweb, dimse, exchange  # noqa: E402
from sonoseg.pacs.config import PacsServer, load_servers  # noqa: E402
from sonoseg.pacs.query import Query, study_tag  # noqa: E402

from _pacs_fixtures import (CINE, OTHER, SINGLE, _Counting, _listener, _loose_series, _orthanc_sends,  # noqa: E402,F401
                            _seg_uids, _wait, header, orthanc, predictor, servers_yaml, srv)

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


# -- configuration (no server) -----------------------------------------------------------------------
def test_server_list_credentials_from_env_or_file_never_inline(tmp_path, monkeypatch):
    pw = tmp_path / "secret"
    pw.write_text("s3cret\n")
    cfg = tmp_path / "pacs.yaml"
    cfg.write_text(f"servers:\n  a: {{host: h, port: 104, ae_title: PACS, password_file: {pw}, username: u}}\n"
                   "  b: {dicomweb_url: 'https://x/dicom-web/', password_env: PW_B}\n")
    servers = load_servers(cfg)
    assert servers["a"].password() == "s3cret" and servers["a"].calling_ae_title == "SONOSEG"
    assert servers["b"].dicomweb_url == "https://x/dicom-web" and not servers["b"].has_dimse
    monkeypatch.delenv("PW_B", raising=False)
    with pytest.raises(ConfigError, match="PW_B is not set"):
        servers["b"].password()
    monkeypatch.setenv("PW_B", "pw-from-env-42")
    assert servers["b"].password() == "pw-from-env-42" and "pw-from-env" not in repr(servers["b"])
    cfg.write_text("servers:\n  a: {host: h, port: 104, password: hunter2}\n")
    with pytest.raises(ConfigError, match="password_env") as e:
        load_servers(cfg)
    assert "hunter2" not in str(e.value)
    cfg.write_text("servers:\n  a: {host: h, port: 104, retrieve: move}\n")
    with pytest.raises(ConfigError, match="move_destination"):
        load_servers(cfg)
    with pytest.raises(ConfigError, match="no PACS server list"):
        load_servers(tmp_path / "missing.yaml")


def test_query_becomes_the_same_filters_for_both_protocols():
    q = Query(patient_id="PSEUDO1", study_date="20200101-20201231", modality="US")
    assert q.filters("study") == {"PatientID": "PSEUDO1", "StudyDate": "20200101-20201231", "ModalitiesInStudy": "US"}
    ident = q.identifier("series")
    assert ident.QueryRetrieveLevel == "SERIES" and ident.Modality == "US" and ident.SeriesInstanceUID == ""
    with pytest.raises(ConfigError):
        Query(study_date="last week").filters("study")


@pytest.mark.parametrize("given,dicom", [("2016-01-01", "20160101"), ("20160101", "20160101"),
                                         ("2016-01-01-2016-12-31", "20160101-20161231"), ("-2016-12-31", "-20161231"),
                                         ("2016-01-01-", "20160101-")])
def test_study_dates_in_iso_or_dicom_form(given, dicom):
    assert Query(study_date=given).filters("study")["StudyDate"] == dicom


@pytest.mark.parametrize("bad", ["2016/01/01", "01.01.2016", "2016-13-01", "-", "2016-1-1"])
def test_other_date_forms_are_refused_with_the_expected_form(bad):
    with pytest.raises(ConfigError, match="YYYYMMDD or YYYY-MM-DD|not a calendar date"):
        Query(study_date=bad).filters("study")


def test_connection_refused_is_named_and_tried_three_times_over_both_protocols(monkeypatch):
    """Nothing listens on the port: "connection refused at HOST:PORT" after 3 tries (DIMSE, as DICOMweb),
    not "aborted the association (check the AE titles)"."""
    from _pg import free_port

    monkeypatch.setattr(dimse, "RETRY_FIRST_WAIT_S", 0.01)
    port = free_port()
    down = PacsServer("down", host="127.0.0.1", port=port, ae_title="PACS", dicomweb_url=f"http://127.0.0.1:{port}/dw",
                      timeout_s=5)
    with pytest.raises(PacsError, match=rf"^server down: C-ECHO: connection refused at 127\.0\.0\.1:{port} \(3 tries\)$"):
        dimse.echo(down)
    with pytest.raises(PacsError, match=rf"C-STORE: connection refused at 127\.0\.0\.1:{port} \(3 tries\)"):
        dimse.store(down, [dicom_testfile(SINGLE)])
    with pytest.raises(PacsError, match=rf"cannot reach http://127\.0\.0\.1:{port}/dw \(connection refused\)"):
        dicomweb.search(down, Query())


# -- find / echo ---------------------------------------------------------------------------------------
def test_echo_and_find_agree_over_both_protocols(srv):
    assert dimse.echo(srv) > 0
    assert exchange.echo(srv, "dicomweb")[0] == "dicomweb"
    by_web = dicomweb.search(srv, Query(modality="US"))
    by_dimse = dimse.find(srv, Query(modality="US"))
    expected = {header(n).StudyInstanceUID for n in (SINGLE, CINE, OTHER)}
    assert {r["StudyInstanceUID"] for r in by_web} == expected
    assert sorted(by_web, key=str) == sorted(by_dimse, key=str)  # same rows, field by field
    cine = header(CINE)
    rows = exchange.find(srv, Query(study_date=cine.StudyDate), "study", "dimse")
    assert [r["StudyInstanceUID"] for r in rows] == [cine.StudyInstanceUID]
    series = dimse.find(srv, Query(study_uid=cine.StudyInstanceUID, modality="US"), "series")
    assert [(r["SeriesInstanceUID"], r["Modality"], r["NumberOfSeriesRelatedInstances"]) for r in series] == \
        [(cine.SeriesInstanceUID, "US", "1")]
    assert dicomweb.search(srv, Query(study_uid=cine.StudyInstanceUID, modality="US"), "series") == series


def test_wrong_credentials_and_ae_title_are_one_line_errors(srv, monkeypatch):
    monkeypatch.setenv("SONOSEG_TEST_PACS_PW", "wrong")
    with pytest.raises(PacsError, match="HTTP 401, authentication failed"):
        dicomweb.search(srv, Query())
    srv.ae_title = "NOT-ORTHANC"  # Orthanc checks the called AE title (DicomCheckCalledAet)
    with pytest.raises(PacsError, match=r"rejected the association \(check the AE titles: we are SONOSEG, the "
                                        r"server NOT-ORTHANC\)"):
        dimse.echo(srv)


# -- pull -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("via,retrieve", [("dicomweb", None), ("dimse", "get"), ("dimse", "move")])
def test_pull_gets_the_stored_bytes(srv, orthanc, tmp_path, via, retrieve):
    """WADO-RS, C-GET and C-MOVE all bring back the instance in its stored transfer syntax (JPEG 2000
    here, not a transcode) with the original pixels."""
    from _orthanc import CLIENT_AET

    if retrieve == "move":
        srv.retrieve, srv.move_destination, srv.move_port = "move", CLIENT_AET, orthanc.listener_port
    src = pydicom.dcmread(dicom_testfile(SINGLE))
    got = exchange.pull(srv, Query(study_uid=src.StudyInstanceUID, series_uid=src.SeriesInstanceUID), tmp_path, via)
    (files,) = got.values()
    assert [f.parent.name for f in files] == [study_tag(src.StudyInstanceUID)]
    ds = pydicom.dcmread(files[0])
    assert ds.SOPInstanceUID == src.SOPInstanceUID
    assert ds.file_meta.TransferSyntaxUID == src.file_meta.TransferSyntaxUID
    np.testing.assert_array_equal(ds.pixel_array, src.pixel_array)


def test_pull_needs_a_filter(srv, tmp_path):
    with pytest.raises(PacsError, match="give a study UID"):
        exchange.pull(srv, Query(), tmp_path)


# -- round trip: pull, segment, push, query back ----------------------------------------------------
def _mask_file(r) -> np.ndarray:
    if r["mask"].endswith(".png"):
        return cv2.imread(r["mask"], cv2.IMREAD_UNCHANGED)[None]
    data = np.asanyarray(nib.load(r["mask"]).dataobj)[:, :, 0, :]  # x, y, 1, frame -> frame, y, x
    return np.transpose(data, (2, 1, 0))


def test_round_trip_pull_segment_push_query(srv, predictor, tmp_path):
    from sonoseg.infer.options import PredictOptions
    from sonoseg.infer.run import predict_inputs

    pulled = []
    for name, via in ((SINGLE, "dicomweb"), (CINE, "dimse")):
        h = header(name)
        pulled += exchange.pull(srv, Query(study_uid=h.StudyInstanceUID, series_uid=h.SeriesInstanceUID),
                                tmp_path / "in", via)[h.StudyInstanceUID]
    assert len(pulled) == 2
    payload = predict_inputs(pulled, tmp_path / "pred", PredictOptions(domain=False), predictor=predictor,
                             log=lambda m: None)
    results = {pydicom.dcmread(r["input"], stop_before_pixels=True).SOPInstanceUID: r for r in payload["results"]}
    assert all(r["status"] == "ok" and r["seg"] for r in results.values())

    for name, via in ((SINGLE, "dicomweb"), (CINE, "dimse")):
        src = header(name)
        r = results[src.SOPInstanceUID]
        mask = _mask_file(r)
        assert mask.any(), "the shipped model finds a structure in these images"
        written = pydicom.dcmread(r["seg"], stop_before_pixels=True)
        seg_uid = written.SOPInstanceUID
        assert exchange.push(srv, [Path(r["seg"])], via) == [seg_uid]

        # query back over both protocols, retrieve over DICOMweb, read with highdicom
        q = Query(study_uid=src.StudyInstanceUID, series_uid=written.SeriesInstanceUID, modality="SEG")
        (row,) = exchange.find(srv, q, "series", "dimse")
        assert exchange.find(srv, q, "series", "dicomweb") == [row]
        back = dicomweb.retrieve(srv, src.StudyInstanceUID, tmp_path / "back", row["SeriesInstanceUID"])
        seg = hd.seg.segread(str(back[0]))
        assert seg.SOPInstanceUID == seg_uid and seg.SOPClassUID == SEG_STORAGE
        ref = seg.ReferencedSeriesSequence[0]
        assert ref.SeriesInstanceUID == src.SeriesInstanceUID
        assert [i.ReferencedSOPInstanceUID for i in ref.ReferencedInstanceSequence] == [src.SOPInstanceUID]
        n = int(src.get("NumberOfFrames", 1))
        per_frame = [item.DerivationImageSequence[0].SourceImageSequence[0] for item in
                     seg.PerFrameFunctionalGroupsSequence]
        assert {s.ReferencedSOPInstanceUID for s in per_frame} == {src.SOPInstanceUID}
        if n > 1:
            assert [int(s.ReferencedFrameNumber) for s in per_frame] == list(range(1, n + 1))
            pixels = seg.get_pixels_by_source_frame(src.SOPInstanceUID, list(range(1, n + 1)),
                                                    combine_segments=True, skip_overlap_checks=True)
        else:
            pixels = seg.get_pixels_by_source_instance([src.SOPInstanceUID], combine_segments=True,
                                                       skip_overlap_checks=True)
        np.testing.assert_array_equal(pixels, mask)
        # the calibration sonoseg measured with travels in the SEG (CINE: US regions; SINGLE: none)
        measured = json.loads(Path(r["measurements"]).read_text())["pixel_spacing_mm"]
        shared = seg.SharedFunctionalGroupsSequence[0]
        if measured is None:
            assert name == SINGLE and "PixelMeasuresSequence" not in shared
        else:
            assert name == CINE
            spacing = [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing]
            assert spacing == pytest.approx(measured, rel=1e-12)


# -- listener ---------------------------------------------------------------------------------------------
def test_listener_segments_a_study_sent_by_the_pacs_and_stores_the_seg_back(srv, orthanc, predictor, tmp_path,
                                                                           caplog):
    from sonoseg.pacs.sinks import PacsSink, StoreSink
    from sonoseg.store.models import Job

    caplog.set_level(logging.DEBUG, logger="sonoseg")
    store = StoreSink(tmp_path / "store")
    with _listener(orthanc, tmp_path, predictor, [PacsSink(srv, "dimse"), store], quiet_s=0.3,
                   allowed_aets=("ORTHANC",), keep_results_s=float("inf")) as lst:  # results kept to compare
        _orthanc_sends(orthanc, OTHER)
        assert lst.wait_idle(60)
    src = header(OTHER)
    assert (lst.stats.received, lst.stats.segmented, lst.stats.segs_sent, lst.stats.failures) == (1, 1, 1, 0)
    (local,) = (tmp_path / "work" / "results" / study_tag(src.StudyInstanceUID)).rglob("*.seg.dcm")
    written = pydicom.dcmread(local, stop_before_pixels=True)
    q = Query(study_uid=src.StudyInstanceUID, series_uid=written.SeriesInstanceUID, modality="SEG")
    (row,) = exchange.find(srv, q, "series", "dicomweb")
    (seg_file,) = dicomweb.retrieve(srv, src.StudyInstanceUID, tmp_path / "back", row["SeriesInstanceUID"])
    seg = hd.seg.segread(str(seg_file))
    assert seg.SOPInstanceUID == written.SOPInstanceUID
    assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    assert not any((tmp_path / "work" / "incoming").rglob("*.dcm"))  # removed once sent
    with store.store.session() as s:  # the image is queued for `sonoseg serve`'s worker
        jobs = s.query(Job).all()
    store.close()
    assert [(j.status, j.created_by, j.format) for j in jobs] == [("queued", "listener", "dicom")]
    text = caplog.text
    assert study_tag(src.StudyInstanceUID) in text and "1 image(s) segmented, 1 SEG(s)" in text
    for value in (src.StudyInstanceUID, src.SOPInstanceUID, str(src.get("PatientName", "")) or "\0",
                  str(src.get("PatientID", "")) or "\0"):
        assert value not in text  # no identifiers in the log


def test_listener_refuses_unknown_calling_ae(orthanc, tmp_path):
    from urllib.error import HTTPError

    with _listener(orthanc, tmp_path, quiet_s=60, allowed_aets=("SOMEONE-ELSE",)) as lst:
        with pytest.raises(HTTPError):
            _orthanc_sends(orthanc, OTHER)
        assert lst.stats.received == 0
    assert not any((tmp_path / "work" / "incoming").rglob("*.dcm"))


def test_listener_queue_is_bounded_and_loses_nothing(srv, orthanc, tmp_path):
    """Full queue: the sender is told 'out of resources' (and keeps the instance); what was accepted is
    on disk and picked up again by the next listener started on the same folder."""
    from _orthanc import CLIENT_AET

    to_listener = PacsServer("listener", host="127.0.0.1", port=orthanc.listener_port, ae_title=CLIENT_AET,
                             calling_ae_title="MODALITY", timeout_s=10)
    lst = _listener(orthanc, tmp_path, quiet_s=3600, max_pending=1, wait_s=0.2).start()
    try:
        with pytest.raises(PacsError, match="refused 1 of 2"):
            dimse.store(to_listener, [dicom_testfile(SINGLE), dicom_testfile(OTHER)])
        assert (lst.stats.received, lst.stats.refused) == (1, 3)  # "out of resources": tried 3 times
    finally:
        lst.stop(flush=False)
    again = _listener(orthanc, tmp_path, quiet_s=3600)
    again._recover()
    assert again._pending == 1 and list(again._studies) == [study_tag(header(SINGLE).StudyInstanceUID)]


# -- CLI -----------------------------------------------------------------------------------------------
def test_cli_echo_find_pull_push(srv, orthanc, tmp_path):
    from typer.testing import CliRunner

    from sonoseg.cli.main import app
    from sonoseg.outputs.dicom_seg import write_dicom_seg

    cfg = servers_yaml(tmp_path, orthanc)
    run = CliRunner().invoke
    env = {"COLUMNS": "60", "SONOSEG_TEST_PACS_PW": srv.password()}
    r = run(app, ["pacs", "echo", "orthanc", "--servers", str(cfg)], env=env)
    assert r.exit_code == 0 and "orthanc: dimse echo ok" in r.output, r.output
    cine = header(CINE)
    r = run(app, ["pacs", "find", "orthanc", "--servers", str(cfg), "--date", cine.StudyDate, "--json"], env=env)
    assert r.exit_code == 0, r.output
    assert cine.StudyInstanceUID in r.output and str(cine.get("PatientName", "")) not in r.output
    d = cine.StudyDate
    iso = f"{d[:4]}-{d[4:6]}-{d[6:]}"
    r = run(app, ["pacs", "find", "orthanc", "--servers", str(cfg), "--date", iso, "--json"], env=env)
    assert r.exit_code == 0 and json.loads(r.output)[0]["StudyInstanceUID"] == cine.StudyInstanceUID, r.output
    r = run(app, ["pacs", "find", "orthanc", "--servers", str(cfg), "--date", d[:4] + "/" + d[4:6]], env=env)
    assert r.exit_code == 2 and "YYYYMMDD or YYYY-MM-DD" in r.output, r.output
    out = tmp_path / "studies"
    r = run(app, ["pacs", "pull", "orthanc", "--servers", str(cfg), "--study", cine.StudyInstanceUID, "--series",
                  cine.SeriesInstanceUID, "-o", str(out), "--via", "dimse"], env=env)
    assert r.exit_code == 0 and "1 study(ies), 1 instance(s) pulled" in r.output, r.output
    (pulled,) = out.rglob("*.dcm")
    seg = write_dicom_seg(pulled, np.ones((2, cine.Rows, cine.Columns), np.uint8), tmp_path / "segs" / "x.seg.dcm")
    r = run(app, ["pacs", "push", "orthanc", str(seg.parent), "--servers", str(cfg)], env=env)
    assert r.exit_code == 0 and "1 instance(s) stored on orthanc" in r.output, r.output
    r = run(app, ["pacs", "echo", "nowhere", "--servers", str(cfg)], env=env)
    assert r.exit_code == 2 and "unknown PACS server 'nowhere'" in r.output
    r = run(app, ["pacs", "find", "orthanc", "--servers", str(cfg)], env={**env, "SONOSEG_TEST_PACS_PW": "no"})
    assert r.exit_code == 2 and "authentication failed" in r.output


@pytest.mark.slow
def test_cli_listen_segments_what_the_pacs_sends_and_stops_on_sigint(srv, orthanc, tiny_model, tmp_path):
    """`sonoseg listen` as a user runs it (its own process, the server list, an untrained tiny model):
    Orthanc sends a study, the SEG comes back into Orthanc, Ctrl-C stops it with a summary."""
    import os
    import signal
    import subprocess
    import sys

    from _orthanc import CLIENT_AET

    from conftest import REPO

    src = header(SINGLE)
    before = exchange.find(srv, Query(study_uid=src.StudyInstanceUID, modality="SEG"), "series", "dimse")
    cfg = servers_yaml(tmp_path, orthanc)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "SONOSEG_TEST_PACS_PW": srv.password(), "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "sonoseg", "listen", "--ae-title", CLIENT_AET, "--port", str(orthanc.listener_port),
           "--allow", "ORTHANC", "--send-to", "orthanc", "--via", "dicomweb", "--servers", str(cfg), "--model",
           str(tiny_model), "--backend", "torch", "--threads", "1", "--quiet-period", "0.3", "--work",
           str(tmp_path / "work")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        line = ""
        while "sonoseg listen:" not in line and time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
        assert "sonoseg listen:" in line, line
        _orthanc_sends(orthanc, SINGLE)
        after = before
        while len(after) == len(before) and time.monotonic() < deadline:
            time.sleep(0.3)
            after = exchange.find(srv, Query(study_uid=src.StudyInstanceUID, modality="SEG"), "series", "dimse")
        assert len(after) == len(before) + 1  # the new SEG series, stored by STOW-RS
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert "1 instance(s) received, 1 segmented, 1 SEG(s) sent, 0 refused, 0 failure(s)" in out
    assert study_tag(src.StudyInstanceUID) in out and src.StudyInstanceUID not in out


def test_c_store_decompresses_for_a_peer_that_takes_only_uncompressed(tmp_path):
    """A JPEG 2000 file sent to an SCP that accepts only explicit / implicit little endian goes
    decompressed, with the same pixels (no PACS needed: a pynetdicom SCP stands in)."""
    from _pg import free_port
    from pynetdicom import AE, evt

    got = []

    def handle(event):
        got.append(event.dataset)
        got[-1].file_meta = event.file_meta
        return 0x0000

    scp = AE(ae_title="PLAIN")
    scp.add_supported_context("1.2.840.10008.5.1.4.1.1.6.1", ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    port = free_port()
    server = scp.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, handle)])
    try:
        plain = PacsServer("plain", host="127.0.0.1", port=port, ae_title="PLAIN", timeout_s=10)
        src = pydicom.dcmread(dicom_testfile(SINGLE))
        assert dimse.store(plain, [dicom_testfile(SINGLE)]) == [src.SOPInstanceUID]
    finally:
        server.shutdown()
    (ds,) = got
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1" != src.file_meta.TransferSyntaxUID
    np.testing.assert_array_equal(ds.pixel_array, src.pixel_array)


# -- several single-frame images of one series ------------------------------------------------------------
def test_listener_puts_the_segs_of_a_series_of_stills_in_one_seg_series(srv, orthanc, predictor, tmp_path):
    """Three single-frame images of one series: one SEG series comes back (not three), holding one SEG per
    image, each referencing its own image (SOP Instance UID), numbered as the images, calibrated."""
    from sonoseg.pacs.sinks import PacsSink

    files = _loose_series(tmp_path / "src", 3, "stills")
    heads = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    for f in files:
        assert orthanc.upload(f)["Status"] == "Success"
    study, series = heads[0].StudyInstanceUID, heads[0].SeriesInstanceUID
    with _listener(orthanc, tmp_path, predictor, [PacsSink(srv, "dicomweb")], quiet_s=0.3) as lst:
        found = orthanc.post("/tools/find", {"Level": "Series", "Query": {"SeriesInstanceUID": series}})
        orthanc.post("/modalities/sonoseg/store", {"Resources": found, "Synchronous": True})
        assert lst.wait_idle(90)
    assert (lst.stats.received, lst.stats.segmented, lst.stats.segs_sent, lst.stats.failures) == (3, 3, 3, 0)

    (row,) = exchange.find(srv, Query(study_uid=study, modality="SEG"), "series", "dimse")
    assert row["NumberOfSeriesRelatedInstances"] == "3"
    back = dicomweb.retrieve(srv, study, tmp_path / "back", row["SeriesInstanceUID"])
    by_source = {}
    for f in back:
        seg = hd.seg.segread(str(f))
        (ref_series,) = seg.ReferencedSeriesSequence
        assert ref_series.SeriesInstanceUID == series
        (ref,) = ref_series.ReferencedInstanceSequence
        per_frame = {i.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
                     for i in seg.PerFrameFunctionalGroupsSequence}
        assert per_frame == {ref.ReferencedSOPInstanceUID}
        by_source[ref.ReferencedSOPInstanceUID] = seg
    assert set(by_source) == {h.SOPInstanceUID for h in heads}
    for h in heads:
        seg = by_source[h.SOPInstanceUID]
        assert int(seg.InstanceNumber) == int(h.InstanceNumber)
        pm = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
        assert [float(v) for v in pm.PixelSpacing] == [0.2, 0.25]


# -- re-sending after a failed destination ----------------------------------------------------------------
def test_listener_resends_only_to_the_destination_that_was_down(srv, orthanc, predictor, tmp_path):
    """Two Orthanc destinations, the second down: the first gets the SEGs once; the second gets the very
    same SEGs (same SOP Instance UIDs) once it is up, by a re-send; nothing is segmented or sent twice."""
    from _orthanc import AET, Orthanc

    from sonoseg.pacs.sinks import PacsSink

    files = _loose_series(tmp_path / "src", 2, "resend")
    for f in files:
        assert orthanc.upload(f)["Status"] == "Success"
    head = pydicom.dcmread(files[0], stop_before_pixels=True)
    second = Orthanc()  # ports reserved, not started yet: "down"
    b_srv = PacsServer("second", host="127.0.0.1", port=second.dicom_port, ae_title=AET,
                       dicomweb_url=second.dicomweb_url, username=srv.username, password_env=srv.password_env,
                       timeout_s=10)
    a = _Counting("orthanc (dimse)", PacsSink(srv, "dimse"))
    b = PacsSink(b_srv, "dicomweb")
    try:
        with _listener(orthanc, tmp_path, predictor, [a, b], quiet_s=0.3, retry_s=0.5, retry_max_s=1.0) as lst:
            found = orthanc.post("/tools/find", {"Level": "Series",
                                                 "Query": {"SeriesInstanceUID": head.SeriesInstanceUID}})
            orthanc.post("/modalities/sonoseg/store", {"Resources": found, "Synchronous": True})
            assert lst.wait_idle(90)
            (waiting,) = lst.waiting
            assert waiting.pending == [b.name] and waiting.done == [a.name] and "cannot reach" in waiting.errors[b.name]
            assert len(list((tmp_path / "work" / "incoming").rglob("*.dcm"))) == 2  # kept for the re-send
            (at_a,) = _seg_uids(orthanc, head.StudyInstanceUID)
            assert len(at_a) == 2
            second.start()
            assert _wait(lambda: not lst.waiting and not any((tmp_path / "work" / "outbox").iterdir()), 60)
        assert len(a.calls) == 1  # never re-sent to the destination that had it
        assert lst.stats.resent == 1 and lst.stats.segmented == 2 and lst.stats.studies == 1
        assert _seg_uids(second, head.StudyInstanceUID) == [at_a]  # the same SEGs, not new ones
        assert _seg_uids(orthanc, head.StudyInstanceUID) == [at_a]  # still one copy at the first
        assert not any((tmp_path / "work" / "incoming").rglob("*.dcm"))
    finally:
        second.stop()


def test_a_restarted_listener_sends_what_is_left_without_segmenting_again(srv, orthanc, predictor, tmp_path):
    from _orthanc import CLIENT_AET

    to_listener = PacsServer("listener", host="127.0.0.1", port=orthanc.listener_port, ae_title=CLIENT_AET,
                             calling_ae_title="MODALITY", timeout_s=10)
    files = _loose_series(tmp_path / "src", 2, "restart")
    a, b = _Counting("A"), _Counting("B", fail=True)
    lst = _listener(orthanc, tmp_path, predictor, [a, b], quiet_s=0.2, retry_s=3600).start()
    try:
        dimse.store(to_listener, files)
        assert lst.wait_idle(90)
    finally:
        lst.stop(flush=False)
    assert len(a.calls) == 1 and len(a.calls[0]) == 2 and b.calls == a.calls
    assert len(list((tmp_path / "work" / "outbox").glob("*.json"))) == 1

    a2, b2 = _Counting("A"), _Counting("B")
    again = _listener(orthanc, tmp_path, None, [a2, b2], quiet_s=0.2).start()  # no model: cannot segment
    try:
        assert _wait(lambda: b2.calls and not again.waiting, 30)
    finally:
        again.stop()
    assert a2.calls == [] and b2.calls == a.calls  # the same SEG files, to B only
    assert again.stats.segmented == 0 and again.stats.failures == 0 and again.stats.resent == 1
    assert not any((tmp_path / "work" / "outbox").glob("*.json"))
    assert not any((tmp_path / "work" / "incoming").rglob("*.dcm"))


def test_listener_sends_the_overlay_capture_when_asked(srv, orthanc, predictor, tmp_path):
    """--overlay-sc: next to the SEG, a Secondary Capture of the overlay in a series of its own, referencing
    the image; sent back to the listener, neither is segmented."""
    from sonoseg.outputs.dicom_sc import SERIES_DESCRIPTION
    from sonoseg.pacs.sinks import PacsSink

    (src,) = _loose_series(tmp_path / "src", 1, "capture")
    assert orthanc.upload(src)["Status"] == "Success"
    head = pydicom.dcmread(src, stop_before_pixels=True)
    with _listener(orthanc, tmp_path, predictor, [PacsSink(srv, "dimse")], quiet_s=0.3, overlay_sc=True) as lst:
        found = orthanc.post("/tools/find", {"Level": "Study", "Query": {"StudyInstanceUID": head.StudyInstanceUID}})
        orthanc.post("/modalities/sonoseg/store", {"Resources": found, "Synchronous": True})
        assert lst.wait_idle(60)
        assert (lst.stats.segmented, lst.stats.segs_sent) == (1, 2)  # one SEG + one capture
        ours = [s for m in ("SEG", "OT") for s in orthanc.post(
            "/tools/find", {"Level": "Series", "Query": {"StudyInstanceUID": head.StudyInstanceUID, "Modality": m}})]
        assert len(ours) == 2
        orthanc.post("/modalities/sonoseg/store", {"Resources": ours, "Synchronous": True})  # the results back
        assert lst.wait_idle(60)
    assert (lst.stats.received, lst.stats.segmented, lst.stats.segs_sent) == (3, 1, 2)  # SEG, capture: not segmented
    assert lst.stats.not_images == 2  # counted as skipped, by SOP class (SEG) and as sonoseg's own capture
    rows = exchange.find(srv, Query(study_uid=head.StudyInstanceUID), "series", "dicomweb")
    assert sorted((r["Modality"], r["SeriesDescription"]) for r in rows) == \
        [("OT", SERIES_DESCRIPTION), ("SEG", "sonoseg segmentation"), ("US", head.SeriesDescription)]
    (ot,) = [r for r in rows if r["Modality"] == "OT"]
    (f,) = dicomweb.retrieve(srv, head.StudyInstanceUID, tmp_path / "back", ot["SeriesInstanceUID"])
    sc = pydicom.dcmread(f)
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == head.SOPInstanceUID
    assert sc.pixel_array.shape == (head.Rows, head.Columns, 3)


def test_kept_instances_are_not_segmented_again_at_the_next_start(orthanc, predictor, tmp_path):
    """--keep-received: delivered instances move to WORK/kept/, out of the folder a restart picks up."""
    from _orthanc import CLIENT_AET

    to_listener = PacsServer("listener", host="127.0.0.1", port=orthanc.listener_port, ae_title=CLIENT_AET,
                             calling_ae_title="MODALITY", timeout_s=10)
    (src,) = _loose_series(tmp_path / "src", 1, "kept")
    sink = _Counting("A")
    with _listener(orthanc, tmp_path, predictor, [sink], quiet_s=0.2, keep_received=True) as lst:
        dimse.store(to_listener, [src])
        assert lst.wait_idle(60)
    assert lst.stats.segmented == 1 and len(sink.calls) == 1
    sop = pydicom.dcmread(src, stop_before_pixels=True).SOPInstanceUID
    assert [p.name for p in (tmp_path / "work" / "kept").rglob("*.dcm")] == [f"{sop}.dcm"]
    assert not any((tmp_path / "work" / "incoming").rglob("*.dcm"))
    again = _listener(orthanc, tmp_path, None, [sink])
    again._recover()
    assert again._pending == 0 and not again._studies and not again.waiting
