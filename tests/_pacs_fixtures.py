"""Shared by the PACS test files: a real Orthanc (Debian packages orthanc + orthanc-dicomweb) started
once per test module on loopback ports, the shipped model, and helpers that drive ``sonoseg listen``.
Import the fixtures by name into a test module (``from _pacs_fixtures import orthanc, srv, predictor``)."""

from __future__ import annotations

import time
from pathlib import Path

import pydicom
import pytest
from conftest import dicom_testfile

from sonoseg.errors import PacsError
from sonoseg.pacs.config import PacsServer

SINGLE = "US1_J2KR.dcm"  # JPEG 2000 lossless, one frame, no US regions
CINE = "OBXXXX1A_rle_2frame.dcm"  # US Multi-frame, RLE, 2 frames, US regions (calibrated)
OTHER = "gdcm-US-ALOKA-16.dcm"  # another vendor and study: sent to the listener by Orthanc itself


@pytest.fixture(scope="module")
def orthanc():
    from _orthanc import Orthanc, dicomweb_plugin, orthanc_binary

    if orthanc_binary() is None:
        pytest.skip("Orthanc not installed (apt-get install orthanc orthanc-dicomweb; .ci/run does)")
    if dicomweb_plugin() is None:
        pytest.skip("Orthanc DICOMweb plugin not installed (apt-get install orthanc-dicomweb)")
    server = Orthanc().start()
    try:
        for name in (SINGLE, CINE, OTHER):
            assert server.upload(dicom_testfile(name))["Status"] == "Success"
        yield server
    finally:
        server.stop()


@pytest.fixture
def srv(orthanc, monkeypatch) -> PacsServer:
    from _orthanc import AET, CLIENT_AET, PASSWORD, USER

    monkeypatch.setenv("SONOSEG_TEST_PACS_PW", PASSWORD)
    return PacsServer("orthanc", host="127.0.0.1", port=orthanc.dicom_port, ae_title=AET, calling_ae_title=CLIENT_AET,
                      dicomweb_url=orthanc.dicomweb_url, username=USER, password_env="SONOSEG_TEST_PACS_PW",
                      timeout_s=20)


@pytest.fixture(scope="session")
def predictor():
    """The shipped model (torch backend: no per-session ONNX build), 1 thread."""
    from sonoseg.infer.predictor import Predictor

    return Predictor.from_path(None, backend="torch", threads=1)


def header(name):
    return pydicom.dcmread(dicom_testfile(name), stop_before_pixels=True)


def servers_yaml(tmp_path, orthanc, **extra) -> Path:
    from _orthanc import AET, CLIENT_AET, USER

    lines = [f"calling_ae_title: {CLIENT_AET}", "servers:", "  orthanc:", "    host: 127.0.0.1",
             f"    port: {orthanc.dicom_port}", f"    ae_title: {AET}", f"    dicomweb_url: {orthanc.dicomweb_url}/",
             f"    username: {USER}", "    password_env: SONOSEG_TEST_PACS_PW"]
    lines += [f"    {k}: {v}" for k, v in extra.items()]
    p = tmp_path / "pacs.yaml"
    p.write_text("\n".join(lines) + "\n")
    return p


def _listener(orthanc, tmp_path, predictor=None, sinks=(), **kw):
    from _orthanc import CLIENT_AET

    from sonoseg.pacs.listener import Listener, ListenerSettings

    settings = ListenerSettings(work_dir=tmp_path / "work", ae_title=CLIENT_AET, port=orthanc.listener_port,
                                domain=False, **kw)
    return Listener(settings, predictor, sinks)


def _orthanc_sends(orthanc, name: str) -> None:
    """Orthanc itself C-STOREs the file's series to the listener (as a routing rule or a user would);
    the series, not the study: other tests add SEG series to these studies."""
    series = orthanc.post("/tools/find", {"Level": "Series",
                                          "Query": {"SeriesInstanceUID": header(name).SeriesInstanceUID}})
    orthanc.post("/modalities/sonoseg/store", {"Resources": series, "Synchronous": True})


def _loose_series(tmp_path, n: int, tag: str) -> list[Path]:
    """``n`` single-frame US images (calibrated phantoms) of one series in one study, as a scanner sends
    the still images of an examination."""
    from pydicom.uid import generate_uid

    from sonoseg.data.phantom import make_phantom
    from sonoseg.io.us_wrap import UsWrapOptions, wrap_as_us_dicom

    study, series = generate_uid(entropy_srcs=[tag, "study"]), generate_uid(entropy_srcs=[tag, "series"])
    out = []
    for i in range(n):
        ph = make_phantom((96, 128), n_lesions=1, seed=40 + i)
        out.append(wrap_as_us_dicom(ph.image, tmp_path / f"{tag}-{i}.dcm", pixel_spacing_mm=(0.2, 0.25),
                                    options=UsWrapOptions(seed_uid=f"{tag}-{i}", study_uid=study, series_uid=series,
                                                          instance_number=n - i)))  # instance numbers not in file order
    return out


class _Counting:
    """A destination that records what it was asked to send (optionally failing, like a server down)."""

    def __init__(self, name: str, inner=None, fail: bool = False):
        self.name, self.inner, self.fail, self.calls = name, inner, fail, []

    def send(self, segs, sources) -> int:
        self.calls.append(sorted(str(p) for p in segs))
        if self.fail:
            raise PacsError(f"server {self.name}: cannot reach it")
        return self.inner.send(segs, sources) if self.inner is not None else len(segs)


def _wait(cond, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


def _seg_uids(server, study: str) -> list[list[str]]:
    """SOP Instance UIDs of the SEG instances of a study, per SEG series, read through Orthanc's REST API."""
    out = []
    for s in server.post("/tools/find", {"Level": "Series", "Expand": True,
                                         "Query": {"StudyInstanceUID": study, "Modality": "SEG"}}):
        out.append(sorted(server.get(f"/instances/{i}")["MainDicomTags"]["SOPInstanceUID"] for i in s["Instances"]))
    return out
