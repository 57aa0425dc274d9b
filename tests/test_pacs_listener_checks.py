"""``sonoseg listen`` as a service a hospital leaves running: it answers a failure status for what it
cannot store or read, checks both AE titles and logs who was turned away, keeps the temporary C-MOVE
receiver of ``pacs pull`` to the expected peer and interface, and cleans up after itself (delivered
results, what a killed run left)."""

from __future__ import annotations

import logging
import os
import re

import pydicom
import pytest
from conftest import dicom_testfile

pytest.importorskip("pynetdicom", reason="pip install -e '.[pacs]'")

from _pacs_fixtures import OTHER, _Counting, _listener, _loose_series, orthanc, predictor  # noqa: E402,F401

from sonoseg.errors import PacsError  # noqa: E402
from sonoseg.pacs import dimse  # noqa: E402
from sonoseg.pacs.config import PacsServer  # noqa: E402


def _statuses(port: int, called: str, files) -> list[int]:
    """C-STORE each file in one association (pynetdicom as the modality); the status of each answer."""
    from pynetdicom import AE

    ae = AE(ae_title="MODALITY")
    for f in files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(pydicom.dcmread(f)).Status) for f in files]
    finally:
        assoc.release()


def test_broken_instances_get_a_failure_status_and_one_log_line_each(orthanc, tmp_path, caplog):
    """Truncated pixel data and a 60000 x 60000 header are "cannot understand" (0xC211), an image larger
    than the listener segments is "out of resources" (0xA700); the sound one is stored. One log line per
    instance with the status it was answered, and no identifier in them."""
    from _orthanc import CLIENT_AET

    caplog.set_level(logging.INFO, logger="sonoseg")
    (good,) = _loose_series(tmp_path / "src", 1, "sound")  # 96 x 128
    big = dicom_testfile(OTHER)  # 480 x 640: more than this listener's limit (below)
    truncated, huge = tmp_path / "truncated.dcm", tmp_path / "huge.dcm"
    ds = pydicom.dcmread(big)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(truncated)
    ds = pydicom.dcmread(big)
    ds.Rows = ds.Columns = 60000
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(huge)
    lst = _listener(orthanc, tmp_path, quiet_s=3600, max_frame_pixels=100_000).start()
    try:
        assert _statuses(orthanc.listener_port, CLIENT_AET, [good, truncated, huge, big]) == \
            [0x0000, 0xC211, 0xC211, 0xA700]
        assert (lst.stats.received, lst.stats.refused) == (1, 3)
    finally:
        lst.stop(flush=False)
    lines = [r.getMessage() for r in caplog.records if " from MODALITY@127.0.0.1: " in r.getMessage()]
    assert len(lines) == 4
    assert re.search(r"study-\w+: instance-\w+ from MODALITY@127\.0\.0\.1: stored \(0x0000\)", lines[0])
    assert "refused (0xC211): pixel data holds 204800 bytes, the header (480 x 640, 1 frame(s)) needs 614400" in lines[1]
    assert "refused (0xC211): pixel data holds 614400 bytes, the header (60000 x 60000" in lines[2]
    assert "refused (0xA700): a frame of 480 x 640 x 1 is more than this listener segments" in lines[3]
    for f in (good, big):
        head = pydicom.dcmread(f, stop_before_pixels=True)
        assert head.StudyInstanceUID not in caplog.text and head.SOPInstanceUID not in caplog.text
    sop = pydicom.dcmread(good, stop_before_pixels=True).SOPInstanceUID
    assert [p.name for p in (tmp_path / "work" / "incoming").rglob("*.dcm")] == [f"{sop}.dcm"]


def test_listener_checks_both_ae_titles_and_logs_every_rejection(orthanc, tmp_path, caplog):
    from _orthanc import CLIENT_AET

    caplog.set_level(logging.INFO, logger="sonoseg")
    with _listener(orthanc, tmp_path, quiet_s=3600, allowed_aets=("MODALITY",)) as lst:
        wrong_called = PacsServer("l", host="127.0.0.1", port=orthanc.listener_port, ae_title="WRONGAE",
                                  calling_ae_title="MODALITY", timeout_s=10)
        wrong_calling = PacsServer("l", host="127.0.0.1", port=orthanc.listener_port, ae_title=CLIENT_AET,
                                   calling_ae_title="INTRUDER", timeout_s=10)
        for who in (wrong_called, wrong_calling):
            with pytest.raises(PacsError, match="rejected the association"):
                dimse.store(who, [dicom_testfile(OTHER)])
        right = PacsServer("l", host="127.0.0.1", port=orthanc.listener_port, ae_title=CLIENT_AET,
                           calling_ae_title="MODALITY", timeout_s=10)
        assert len(dimse.store(right, [dicom_testfile(OTHER)])) == 1
        assert (lst.stats.rejected, lst.stats.received) == (2, 1)
    rejected = [r.getMessage() for r in caplog.records if "association rejected" in r.getMessage()]
    assert len(rejected) == 2
    assert re.search(r"from 127\.0\.0\.1:\d+, calling AE title 'MODALITY', called 'WRONGAE'", rejected[0])
    assert re.search(r"from 127\.0\.0\.1:\d+, calling AE title 'INTRUDER', called 'SONOSEG'", rejected[1])


def test_pull_move_receiver_binds_loopback_and_takes_only_the_server_it_asked(tmp_path, caplog):
    """The temporary C-STORE SCP of a C-MOVE: on 127.0.0.1 by default (not every interface), and only
    for the PACS's own AE title calling ours."""
    from _pg import free_port
    from pynetdicom import evt

    caplog.set_level(logging.INFO, logger="sonoseg")
    srv = PacsServer("pacs", host="127.0.0.1", port=104, ae_title="PACS", retrieve="move",
                     move_destination="SONOSEG", move_port=free_port(), timeout_s=10)
    scp = dimse.move_receiver(srv, [(evt.EVT_C_STORE, lambda event: 0x0000)])
    try:
        assert scp.server_address[0] == "127.0.0.1"
        as_pacs = PacsServer("r", host="127.0.0.1", port=srv.move_port, ae_title="SONOSEG", calling_ae_title="PACS",
                             timeout_s=10)
        assert len(dimse.store(as_pacs, [dicom_testfile(OTHER)])) == 1
        stranger = PacsServer("r", host="127.0.0.1", port=srv.move_port, ae_title="SONOSEG",
                              calling_ae_title="SOMEONE", timeout_s=10)
        with pytest.raises(PacsError, match="rejected the association"):
            dimse.store(stranger, [dicom_testfile(OTHER)])
    finally:
        scp.shutdown()
    assert re.search(r"association rejected: from 127\.0\.0\.1:\d+, calling AE title 'SOMEONE'", caplog.text)


def _send(orthanc, files):
    from _orthanc import CLIENT_AET

    to = PacsServer("listener", host="127.0.0.1", port=orthanc.listener_port, ae_title=CLIENT_AET,
                    calling_ae_title="MODALITY", timeout_s=10)
    dimse.store(to, files)


@pytest.mark.parametrize("keep,sinks,kept", [(0.0, 1, False), (float("inf"), 1, True), (0.0, 0, True)])
def test_results_are_removed_once_delivered_everywhere(orthanc, predictor, tmp_path, keep, sinks, kept):
    """Default: a study's WORK/results folder (masks, overlays: derived from the patient's images) goes once
    every destination has the SEGs; kept with ``keep_results_s=inf``, and when there is no destination."""
    files = _loose_series(tmp_path / "src", 1, f"prune-{sinks}-{keep}")
    dest = [_Counting("A")] * sinks
    with _listener(orthanc, tmp_path, predictor, dest, quiet_s=0.2, keep_results_s=keep) as lst:
        _send(orthanc, files)
        assert lst.wait_idle(60)
    assert lst.stats.segmented == 1
    assert any((tmp_path / "work" / "results").rglob("*.seg.dcm")) == kept


def test_results_are_removed_after_the_retention_time(orthanc, predictor, tmp_path):
    from sonoseg.pacs.listener import DELIVERED

    files = _loose_series(tmp_path / "src", 1, "retention")
    with _listener(orthanc, tmp_path, predictor, [_Counting("A")], quiet_s=0.2, keep_results_s=3600) as lst:
        _send(orthanc, files)
        assert lst.wait_idle(60)
        (marker,) = (tmp_path / "work" / "results").rglob(DELIVERED)
        marker.write_text("0\n")  # delivered long ago
        lst._prune()
    assert not any((tmp_path / "work" / "results").iterdir())


def test_a_killed_listeners_leftovers_are_cleaned_at_start(orthanc, predictor, tmp_path):
    """What a SIGKILL during segmentation leaves: the received instance, half-written files, the run's
    temporary folder and partial outputs. The next start removes the leftovers and segments the instance
    again, once."""
    from sonoseg.io.safety import TMP_PREFIX
    from sonoseg.pacs.query import study_tag

    (src,) = _loose_series(tmp_path / "src", 1, "killed")
    head = pydicom.dcmread(src, stop_before_pixels=True)
    tag = study_tag(head.StudyInstanceUID)
    work = tmp_path / "work"
    (work / "incoming" / tag).mkdir(parents=True)
    (work / "incoming" / tag / f"{head.SOPInstanceUID}.dcm").write_bytes(src.read_bytes())
    (work / "incoming" / tag / ".half.dcm.1234abcd.part").write_bytes(b"\0" * 10)
    run = work / "results" / tag / "20260101T000000-000001"
    dead = 2 ** 22 + 12345  # a pid that is not running
    assert not os.path.exists(f"/proc/{dead}")
    (run / f"{TMP_PREFIX}{dead}-x1y2").mkdir(parents=True)
    (run / f"{TMP_PREFIX}{dead}-x1y2" / "masks.npy").write_bytes(b"\0" * 100)
    (run / "killed.mask.png").write_bytes(b"\0")
    sink = _Counting("A")
    with _listener(orthanc, tmp_path, predictor, [sink], quiet_s=0.2, keep_results_s=float("inf")) as lst:
        assert not run.exists() and not any((work / "incoming").rglob("*.part"))
        assert lst.wait_idle(60)
    assert lst.stats.segmented == 1 and len(sink.calls) == 1
    assert not list(work.rglob(f"{TMP_PREFIX}*"))
