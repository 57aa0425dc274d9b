"""Transport security end to end on loopback, against a real Orthanc with DICOM TLS, and a certificate
authority made by the test (openssl): DICOMweb over https (a small TLS proxy in front of Orthanc's HTTP
port, which requires a client certificate; Debian's Orthanc 1.10.1 crashes on its own HTTPS) with the
server list's CA, client certificate and a bearer token (checked by Orthanc itself, in a Lua request
filter); DIMSE over TLS with a client certificate both ways (sonoseg -> Orthanc, and Orthanc -> ``sonoseg
listen``); certificate failures named as such rather than "cannot reach"."""

from __future__ import annotations

import logging
import uuid

import pydicom
import pytest
from conftest import dicom_testfile

pytest.importorskip("pynetdicom", reason="pip install -e '.[pacs]'")
pytest.importorskip("dicomweb_client", reason="pip install -e '.[pacs]'")

from _pacs_fixtures import OTHER, SINGLE, _Counting  # noqa: E402

from sonoseg.errors import ConfigError, PacsError  # noqa: E402
from sonoseg.pacs import dicomweb, dimse  # noqa: E402
from sonoseg.pacs.config import PacsServer, load_servers  # noqa: E402
from sonoseg.pacs.query import Query  # noqa: E402
from sonoseg.pacs.tls import TlsSettings  # noqa: E402

TOKEN = "token-" + uuid.uuid4().hex
LUA_FILTER = f"""
function IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)
  return httpHeaders['authorization'] == 'Bearer {TOKEN}'
end
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    from _tls import TestCA, openssl

    if openssl() is None:
        pytest.skip("openssl command line not installed")
    folder = tmp_path_factory.mktemp("pki")
    ca = TestCA(folder)
    return {"ca": ca, "orthanc": ca.issue("orthanc"), "sonoseg": ca.issue("sonoseg"),
            "listener": ca.issue("listener"), "stranger": TestCA(folder, "another CA")}


@pytest.fixture(scope="module")
def tls_orthanc(pki):
    """Orthanc behind an HTTPS proxy (client certificate and bearer token required, the token by a Lua
    filter in Orthanc) with DICOM TLS that requires a client certificate signed by the test CA; it reaches
    the listener over DICOM TLS too. ``.https_url``: the proxy's address."""
    from _orthanc import CLIENT_AET, Orthanc, dicomweb_plugin, orthanc_binary
    from _tls import TlsProxy

    if orthanc_binary() is None or dicomweb_plugin() is None:
        pytest.skip("Orthanc / its DICOMweb plugin not installed")
    ca, own = pki["ca"], pki["orthanc"]
    server = Orthanc(auth=f"Bearer {TOKEN}")
    (server.root / "filter.lua").write_text(LUA_FILTER)
    server.extra.update({
        "AuthenticationEnabled": False, "LuaScripts": [str(server.root / "filter.lua")],
        "DicomTlsEnabled": True, "DicomTlsCertificate": str(own.cert), "DicomTlsPrivateKey": str(own.key),
        "DicomTlsTrustedCertificates": str(ca.cert), "DicomTlsRemoteCertificateRequired": True,
        "DicomModalities": {"sonoseg": {"AET": CLIENT_AET, "Host": "127.0.0.1", "Port": server.listener_port,
                                        "UseDicomTls": True}},
    })
    server.start()
    proxy = TlsProxy(server.http_port, own, client_ca=ca.cert)
    server.https_url = proxy.url
    try:
        assert server.upload(dicom_testfile(OTHER))["Status"] == "Success"
        yield server
    finally:
        proxy.close()
        server.stop()


def _server(orthanc, pki, monkeypatch, **tls) -> PacsServer:
    from _orthanc import AET, CLIENT_AET

    monkeypatch.setenv("SONOSEG_TEST_TOKEN", TOKEN)
    settings = {"ca_file": pki["ca"].cert, "cert_file": pki["sonoseg"].cert, "key_file": pki["sonoseg"].key, **tls}
    return PacsServer("secure", host="127.0.0.1", port=orthanc.dicom_port, ae_title=AET, calling_ae_title=CLIENT_AET,
                      dicomweb_url=orthanc.https_url + "/dicom-web", token_env="SONOSEG_TEST_TOKEN",
                      tls=TlsSettings.parse({k: v for k, v in settings.items() if v is not None}, "secure"),
                      timeout_s=20)


def test_server_list_tls_and_token_settings(tmp_path, pki, monkeypatch):
    ca, me = pki["ca"], pki["sonoseg"]
    cfg = tmp_path / "pacs.yaml"
    cfg.write_text("servers:\n  a:\n    dicomweb_url: https://pacs/dicom-web\n    token_file: " + str(tmp_path / "t")
                   + f"\n    tls: {{ca_file: {ca.cert}, cert_file: {me.cert}, key_file: {me.key}}}\n")
    (tmp_path / "t").write_text("abc\n")
    a = load_servers(cfg)["a"]
    assert a.token() == "abc" and a.tls.verify and a.tls.requests_verify() == str(ca.cert)
    assert a.tls.requests_cert() == (str(me.cert), str(me.key))
    for bad, words in (("tls: {ca_file: /nonexistent.pem}", "does not exist"),
                       (f"tls: {{cert_file: {me.cert}}}", "go together"),
                       ("tls: {verify: maybe}", "true or false"),
                       ("token: abc", "token_env"),
                       ("token_env: T\n    username: u", "not both")):
        cfg.write_text(f"servers:\n  a:\n    dicomweb_url: https://pacs/dicom-web\n    {bad}\n")
        with pytest.raises(ConfigError, match=words):
            load_servers(cfg)


def test_dicomweb_over_https_with_ca_file_client_certificate_and_bearer_token(tls_orthanc, pki, monkeypatch):
    srv = _server(tls_orthanc, pki, monkeypatch)
    rows = dicomweb.search(srv, Query(modality="US"))
    assert [r["StudyInstanceUID"] for r in rows] == [pydicom.dcmread(dicom_testfile(OTHER)).StudyInstanceUID]
    monkeypatch.setenv("SONOSEG_TEST_TOKEN", "wrong")  # Orthanc's filter refuses it
    with pytest.raises(PacsError, match="HTTP 403, access denied"):
        dicomweb.search(srv, Query())
    monkeypatch.setenv("SONOSEG_TEST_TOKEN", TOKEN)
    srv.tls.cert_file = srv.tls.key_file = None  # no client certificate: the proxy ends the handshake
    with pytest.raises(PacsError, match="TLS with https://127.0.0.1:\\d+/dicom-web failed|cannot reach"):
        dicomweb.search(srv, Query())


def test_certificate_errors_are_named(tls_orthanc, pki, monkeypatch):
    """Not "cannot reach": the certificate failure, in words, over both protocols."""
    stranger = pki["stranger"].cert  # a CA that did not sign Orthanc's certificate
    srv = _server(tls_orthanc, pki, monkeypatch, ca_file=stranger)
    with pytest.raises(PacsError, match=r"TLS with https://127.0.0.1:\d+/dicom-web failed: certificate verify failed: "
                                        r"(self.signed|unable to get local issuer)") as e:
        dicomweb.search(srv, Query())
    assert "cannot reach" not in str(e.value)
    with pytest.raises(PacsError, match=r"C-ECHO: TLS with 127.0.0.1:\d+ failed: certificate verify failed"):
        dimse.echo(srv)
    insecure = _server(tls_orthanc, pki, monkeypatch, ca_file=stranger, verify=False)  # verify: false (tests only)
    assert len(dicomweb.search(insecure, Query(modality="US"))) == 1


def test_dimse_over_tls_with_a_client_certificate(tls_orthanc, pki, monkeypatch, tmp_path):
    srv = _server(tls_orthanc, pki, monkeypatch)
    assert dimse.echo(srv) > 0
    src = pydicom.dcmread(dicom_testfile(SINGLE), stop_before_pixels=True)
    assert dimse.store(srv, [dicom_testfile(SINGLE)]) == [src.SOPInstanceUID]
    (row,) = dimse.find(srv, Query(study_uid=src.StudyInstanceUID))
    assert row["StudyInstanceUID"] == src.StudyInstanceUID
    got = dimse.retrieve(srv, src.StudyInstanceUID, tmp_path / "pulled")
    assert [pydicom.dcmread(p).SOPInstanceUID for p in got] == [src.SOPInstanceUID]
    plain = _server(tls_orthanc, pki, monkeypatch)
    plain.tls = None  # Orthanc speaks only TLS on its DICOM port
    with pytest.raises(PacsError, match="aborted the association .*whether the server expects TLS"):
        dimse.echo(plain)


def test_listener_over_tls_receives_from_orthanc_and_sends_back(tls_orthanc, pki, tiny_model, tmp_path, monkeypatch,
                                                                caplog):
    """Orthanc sends over DICOM TLS to a TLS listener (which checks Orthanc's certificate against the CA);
    the SEG goes back over DICOM TLS with sonoseg's client certificate. A sender without TLS gets nothing
    through."""
    from _orthanc import CLIENT_AET

    from sonoseg.infer.predictor import Predictor
    from sonoseg.pacs.listener import Listener, ListenerSettings
    from sonoseg.pacs.sinks import PacsSink

    caplog.set_level(logging.INFO, logger="sonoseg")
    predictor = Predictor.from_path(tiny_model, backend="torch", threads=1)  # the transport is tested, not the model
    srv = _server(tls_orthanc, pki, monkeypatch)
    sink = _Counting("secure", PacsSink(srv, "dimse"))
    me = pki["listener"]
    settings = ListenerSettings(work_dir=tmp_path / "work", ae_title=CLIENT_AET, port=tls_orthanc.listener_port,
                                domain=False, quiet_s=0.3,
                                tls=TlsSettings(ca_file=pki["ca"].cert, cert_file=me.cert, key_file=me.key))
    with Listener(settings, predictor, [sink]) as lst:
        study = pydicom.dcmread(dicom_testfile(OTHER), stop_before_pixels=True).StudyInstanceUID
        found = tls_orthanc.post("/tools/find", {"Level": "Study", "Query": {"StudyInstanceUID": study}})
        tls_orthanc.post("/modalities/sonoseg/store", {"Resources": found, "Synchronous": True})
        assert lst.wait_idle(90)
        assert (lst.stats.received, lst.stats.segmented, lst.stats.segs_sent) == (1, 1, 1)
        plain = PacsServer("plain", host="127.0.0.1", port=tls_orthanc.listener_port, ae_title=CLIENT_AET,
                           calling_ae_title="MODALITY", timeout_s=5)
        with pytest.raises(PacsError):
            dimse.echo(plain)
    segs = tls_orthanc.post("/tools/find", {"Level": "Instance", "Query": {"StudyInstanceUID": study, "Modality": "SEG"}})
    assert len(segs) == 1 and len(sink.calls) == 1
    assert "with TLS" in caplog.text


def test_listen_cli_tls_options_are_checked(tmp_path, pki):
    from typer.testing import CliRunner

    from sonoseg.cli.main import app

    run = CliRunner().invoke
    r = run(app, ["listen", "--tls-cert", str(pki["listener"].cert), "--work", str(tmp_path / "w")],
            env={"COLUMNS": "200"})
    assert r.exit_code == 1 and "DICOM TLS needs --tls-cert and --tls-key" in r.output, r.output
    r = run(app, ["listen", "--tls-cert", str(pki["listener"].cert), "--tls-key", str(tmp_path / "missing.key"),
                  "--work", str(tmp_path / "w")], env={"COLUMNS": "200"})
    assert r.exit_code == 2 and "missing.key does not exist" in r.output, r.output
