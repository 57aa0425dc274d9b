"""A real, throw-away Orthanc PACS for tests: the Debian ``orthanc`` binary with the ``orthanc-dicomweb``
plugin, a temporary JSON configuration and storage folder, HTTP and DICOM on free loopback ports.

The HTTP API needs a user name and password (so the tests exercise sonoseg's credentials); Orthanc
knows one remote modality, ``SONOSEG`` at ``listener_port``, so C-MOVE and Orthanc's own C-STORE to
sonoseg's listener have somewhere to go."""

from __future__ import annotations

import glob
import json
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from _pg import free_port

USER = "sonoseg"
PASSWORD = "orthanc-test-" + uuid.uuid4().hex[:8]
AET = "ORTHANC"
CLIENT_AET = "SONOSEG"


def orthanc_binary() -> str | None:
    return shutil.which("Orthanc") or next((p for p in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc") if Path(p).exists()),
                                           None)


def dicomweb_plugin() -> str | None:
    cands = glob.glob("/usr/share/orthanc/plugins/libOrthancDicomWeb.so*") + \
        glob.glob("/usr/lib/orthanc/libOrthancDicomWeb.so*")
    return sorted(cands)[0] if cands else None


class Orthanc:
    """``extra``: configuration entries over the defaults (HTTPS, DICOM TLS, Lua scripts ...); ``ca_file``:
    the CA this helper trusts for HTTPS; ``auth``: the Authorization header it sends (default: basic)."""

    def __init__(self, extra: dict | None = None, ca_file: Path | None = None, auth: str | None = None):
        self.root = Path(tempfile.mkdtemp(prefix="sonoseg-orthanc-"))
        self.http_port, self.dicom_port, self.listener_port = free_port(), free_port(), free_port()
        self.proc: subprocess.Popen | None = None
        self.extra, self.ca_file, self.auth = dict(extra or {}), ca_file, auth

    @property
    def url(self) -> str:
        scheme = "https" if self.extra.get("SslEnabled") else "http"
        return f"{scheme}://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    def config(self) -> dict:
        return {
            "Name": "sonoseg-test", "StorageDirectory": str(self.root / "db"), "IndexDirectory": str(self.root / "db"),
            "Plugins": [dicomweb_plugin()],
            "HttpPort": self.http_port, "RemoteAccessAllowed": False, "AuthenticationEnabled": True,
            "RegisteredUsers": {USER: PASSWORD}, "HttpCompressionEnabled": False,
            "DicomServerEnabled": True, "DicomAet": AET, "DicomPort": self.dicom_port, "DicomCheckCalledAet": True,
            "DicomAlwaysAllowEcho": True, "DicomAlwaysAllowStore": True, "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowGet": True, "DicomAlwaysAllowMove": True,
            "DicomModalities": {"sonoseg": [CLIENT_AET, "127.0.0.1", self.listener_port]},
            "DicomAssociationCloseDelay": 0, "StableAge": 1, "SyncStorageArea": False,
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "Host": "127.0.0.1"},
            **self.extra,
        }

    def start(self, timeout: float = 60.0) -> "Orthanc":
        cfg = self.root / "orthanc.json"
        cfg.write_text(json.dumps(self.config(), indent=1))
        log = open(self.root / "orthanc.log", "wb")
        self.proc = subprocess.Popen([orthanc_binary(), f"--logdir={self.root}", str(cfg)], stdout=log,
                                     stderr=subprocess.STDOUT, cwd=self.root)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if self.get("/system").get("DicomAet") == AET and self._dicomweb_ready():
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("Orthanc did not become ready in time")

    def _dicomweb_ready(self) -> bool:
        return any("DicomWeb" in p or "dicom-web" in p.lower() for p in self.get("/plugins"))

    def log_tail(self, n: int = 2000) -> str:
        """Orthanc's console output and its own log (``--logdir``): a failed start says why only there."""
        text = ""
        for name in ("orthanc.log", "Orthanc.log"):
            try:
                text += (self.root / name).read_text(errors="replace")
            except OSError:
                pass
        return text[-n:]

    def _request(self, method: str, path: str, body: bytes | None = None, ctype: str = "application/json"):
        import base64
        import urllib.request

        import ssl

        req = urllib.request.Request(self.url + path, data=body, method=method)
        req.add_header("Authorization", self.auth or
                       "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())
        if body is not None:
            req.add_header("Content-Type", ctype)
        ctx = ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else None
        with urllib.request.urlopen(req, timeout=30, context=ctx) as r:
            data = r.read()
        return json.loads(data) if data else None

    def get(self, path: str):
        return self._request("GET", path)

    def post(self, path: str, body):
        if isinstance(body, (dict, list)):
            return self._request("POST", path, json.dumps(body).encode())
        return self._request("POST", path, body, "application/dicom")

    def upload(self, path: Path) -> dict:
        """Store one DICOM file through Orthanc's own REST API (independent of sonoseg's code)."""
        return self.post("/instances", Path(path).read_bytes())

    def delete(self, level: str, orthanc_id: str) -> None:
        self._request("DELETE", f"/{level}/{orthanc_id}")

    def stop(self) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
