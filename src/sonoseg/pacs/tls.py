"""Transport security for both protocols, from one per-server ``tls:`` block.

Why one block for DICOMweb and DIMSE: a hospital's PACS usually has one certificate authority and
issues one client certificate per modality; the same files serve the HTTPS session (requests) and the
DICOM TLS association (pynetdicom takes an :class:`ssl.SSLContext`). Verification is on by default;
``verify: false`` is there for a test server and says so in every error message.

    tls:
      ca_file: /etc/sonoseg/hospital-ca.pem   # trust this CA (default: the system's)
      cert_file: /etc/sonoseg/sonoseg.pem     # client certificate (mutual TLS), with ...
      key_file: /etc/sonoseg/sonoseg.key      # ... its key
      verify: true                            # check the server's certificate and name
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from sonoseg.errors import ConfigError

_KEYS = {"ca_file", "cert_file", "key_file", "verify"}


@dataclass
class TlsSettings:
    ca_file: Optional[Path] = None
    cert_file: Optional[Path] = None
    key_file: Optional[Path] = None
    verify: bool = True

    @classmethod
    def parse(cls, raw, where: str) -> "TlsSettings":
        """A ``tls:`` mapping (``true`` alone: TLS with the system's CAs); files must exist."""
        if raw is True:
            return cls()
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: tls must be a mapping (ca_file, cert_file, key_file, verify) or true")
        unknown = set(raw) - _KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown tls setting(s) {', '.join(sorted(unknown))}")
        t = cls(verify=raw.get("verify", True))
        if not isinstance(t.verify, bool):
            raise ConfigError(f"{where}: tls verify must be true or false")
        for k in ("ca_file", "cert_file", "key_file"):
            if raw.get(k) is not None:
                p = Path(str(raw[k])).expanduser()
                if not p.is_file():
                    raise ConfigError(f"{where}: tls {k} {p} does not exist")
                setattr(t, k, p)
        if bool(t.cert_file) != bool(t.key_file):
            raise ConfigError(f"{where}: tls cert_file and key_file go together (the client certificate and its key)")
        return t

    def client_context(self) -> ssl.SSLContext:
        """For connecting to a server (DIMSE association)."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_file) if self.ca_file else None)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        self._load_cert(ctx)
        return ctx

    def server_context(self) -> ssl.SSLContext:
        """For the listener: our certificate; with ``ca_file`` every sender must show a certificate it signed."""
        if not self.cert_file:
            raise ConfigError("listener TLS needs a certificate and its key")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.ca_file) if self.ca_file else None)
        ctx.verify_mode = ssl.CERT_REQUIRED if self.ca_file and self.verify else ssl.CERT_NONE
        self._load_cert(ctx)
        return ctx

    def _load_cert(self, ctx: ssl.SSLContext) -> None:
        if self.cert_file:
            try:
                ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
            except (ssl.SSLError, OSError) as exc:
                raise ConfigError(f"{self.cert_file}: cannot load the certificate / key ({describe(exc)})") from None

    def requests_verify(self):
        """``requests``' ``verify``: the CA file, True (system CAs) or False."""
        return (str(self.ca_file) if self.ca_file else True) if self.verify else False

    def requests_cert(self):
        return (str(self.cert_file), str(self.key_file)) if self.cert_file else None


def causes(exc: BaseException):
    """``exc`` and every exception it wraps (requests wraps urllib3, which wraps ssl / socket errors)."""
    todo, seen = [exc], set()
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [a for a in e.args if isinstance(a, BaseException)]
        todo += [x for x in (getattr(e, "reason", None), e.__cause__, e.__context__) if isinstance(x, BaseException)]


def describe(exc: BaseException) -> str:
    """An SSL failure in words: the verification message ("certificate has expired", "self-signed
    certificate in certificate chain", "Hostname mismatch ...") rather than the class name."""
    for e in causes(exc):
        if isinstance(e, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {e.verify_message}"
        if isinstance(e, ssl.SSLError):
            return e.reason or str(e).splitlines()[0]
    return "TLS handshake failed"
