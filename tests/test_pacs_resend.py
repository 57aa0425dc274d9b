"""Idempotent SEGs: a study that reaches ``sonoseg listen`` again (a PACS routing rule re-run, a user
pressing "send" twice) gives no second SEG of an image already segmented with the same model and
settings; a changed image, or another model / setting, gives a new SEG that names the one it replaces.
Against a real Orthanc, as the other PACS tests."""

from __future__ import annotations

import pydicom
import pytest

pytest.importorskip("pynetdicom", reason="pip install -e '.[pacs]'")
pytest.importorskip("dicomweb_client", reason="pip install -e '.[pacs]'")

from _pacs_fixtures import _Counting, _listener, _loose_series, _seg_uids, orthanc, predictor, srv  # noqa: E402,F401

from sonoseg.pacs import dimse  # noqa: E402
from sonoseg.pacs.config import PacsServer  # noqa: E402


def _send_series(orthanc, series_uid: str) -> None:
    found = orthanc.post("/tools/find", {"Level": "Series", "Query": {"SeriesInstanceUID": series_uid}})
    orthanc.post("/modalities/sonoseg/store", {"Resources": found, "Synchronous": True})


def test_a_study_sent_three_times_gives_one_seg_per_image(srv, orthanc, predictor, tmp_path):
    """Orthanc sends the same study three times (the last one to a restarted listener): exactly one SEG
    per image in Orthanc, and the re-deliveries are counted, not segmented."""
    from sonoseg.pacs.sinks import PacsSink

    files = _loose_series(tmp_path / "src", 3, "thrice")
    for f in files:
        assert orthanc.upload(f)["Status"] == "Success"
    head = pydicom.dcmread(files[0], stop_before_pixels=True)
    with _listener(orthanc, tmp_path, predictor, [PacsSink(srv, "dimse")], quiet_s=0.3) as lst:
        for _ in range(2):
            _send_series(orthanc, head.SeriesInstanceUID)
            assert lst.wait_idle(90)
    assert (lst.stats.received, lst.stats.segmented, lst.stats.duplicates, lst.stats.segs_sent) == (6, 3, 3, 3)
    with _listener(orthanc, tmp_path, predictor, [PacsSink(srv, "dimse")], quiet_s=0.3) as again:  # restart
        _send_series(orthanc, head.SeriesInstanceUID)
        assert again.wait_idle(90)
    assert (again.stats.received, again.stats.segmented, again.stats.duplicates, again.stats.segs_sent) == (3, 0, 3, 0)
    (segs,) = _seg_uids(orthanc, head.StudyInstanceUID)
    assert len(segs) == 3  # one per image (was 3 -> 6 -> 9)
    assert not any((tmp_path / "work" / "incoming").rglob("*.dcm"))


def _changed_copy(src, dst):
    """The same instance (same SOP Instance UID) with other pixels, as a modality re-sends after an edit."""
    ds = pydicom.dcmread(src)
    a = ds.pixel_array.copy()
    a[: a.shape[0] // 2] = 255 - a[: a.shape[0] // 2]
    ds.PixelData = a.tobytes()
    ds.save_as(dst)
    return dst


def test_a_changed_image_or_setting_gives_a_seg_that_names_the_one_it_replaces(orthanc, predictor, tmp_path):
    from _orthanc import CLIENT_AET

    to_listener = PacsServer("listener", host="127.0.0.1", port=orthanc.listener_port, ae_title=CLIENT_AET,
                             calling_ae_title="MODALITY", timeout_s=10)
    (src,) = _loose_series(tmp_path / "src", 1, "changed")
    changed = _changed_copy(src, tmp_path / "src" / "changed.dcm")
    sink = _Counting("A")
    threshold = predictor.threshold
    try:
        with _listener(orthanc, tmp_path, predictor, [sink], quiet_s=0.2, keep_results_s=float("inf")) as lst:
            for f in (src, src, changed, changed):
                dimse.store(to_listener, [f])
                assert lst.wait_idle(60)
            predictor.threshold = min(threshold + 0.2, 0.95)  # another setting: a new SEG
            dimse.store(to_listener, [changed])
            assert lst.wait_idle(60)
            dimse.store(to_listener, [changed])
            assert lst.wait_idle(60)
    finally:
        predictor.threshold = threshold
    assert len(sink.calls) == 3 and lst.stats.duplicates == 3 and lst.stats.replaced == 2
    first, second, third = (pydicom.dcmread(call[0]) for call in sink.calls)
    assert "ImageComments" not in first and "ReferencedInstanceSequence" not in first
    for new, old, why in ((second, first, "the source image changed"), (third, second, "other settings")):
        assert new.ImageComments == f"Replaces the segmentation {old.SOPInstanceUID} ({why})"
        (ref,) = new.ReferencedInstanceSequence
        assert ref.ReferencedSOPInstanceUID == old.SOPInstanceUID and ref.ReferencedSOPClassUID == old.SOPClassUID
        assert ref.PurposeOfReferenceCodeSequence[0].CodeValue == "121360"
        src_ref = new.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
        assert src_ref == pydicom.dcmread(src, stop_before_pixels=True).SOPInstanceUID
    assert second.SeriesInstanceUID == first.SeriesInstanceUID  # same model and settings: same SEG series
    assert third.SeriesInstanceUID != second.SeriesInstanceUID  # another threshold: a series of its own
