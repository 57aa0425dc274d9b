"""A throw-away certificate authority for TLS tests, made with the openssl command line: a CA, a server
certificate for 127.0.0.1 / localhost, and client certificates, all signed by it (P-256 keys: quick to make; unencrypted PEM,
as Orthanc and pynetdicom read them)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


def openssl() -> str | None:
    return shutil.which("openssl")


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@dataclass
class Pair:
    cert: Path
    key: Path


class TestCA:
    __test__ = False  # not a test class

    def __init__(self, folder: Path, name: str = "sonoseg test CA"):
        self.dir = Path(folder)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.slug = name.replace(" ", "-")
        self.cert, self.key = self.dir / f"{self.slug}.pem", self.dir / f"{self.slug}.key"
        _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-keyout", str(self.key), "-out", str(self.cert), cwd=self.dir)

    def issue(self, name: str, server: bool = True) -> Pair:
        """A certificate for ``name``; server ones are valid for 127.0.0.1 and localhost, and for client
        use too (Orthanc presents its own certificate when it connects out)."""
        key, csr, cert = (self.dir / f"{self.slug}-{name}.{ext}" for ext in ("key", "csr", "pem"))
        ext = self.dir / f"{self.slug}-{name}.ext"
        lines = ["basicConstraints=CA:FALSE", "keyUsage=digitalSignature,keyEncipherment",
                 "extendedKeyUsage=serverAuth,clientAuth" if server else "extendedKeyUsage=clientAuth"]
        if server:
            lines.append("subjectAltName=IP:127.0.0.1,DNS:localhost")
        ext.write_text("\n".join(lines) + "\n")
        _run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(csr),
             cwd=self.dir)
        _run("x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key), "-CAcreateserial",
             "-days", "2", "-extfile", str(ext), "-out", str(cert), cwd=self.dir)
        return Pair(cert, key)


class TlsProxy:
    """HTTPS in front of a plain HTTP port on loopback (Debian's Orthanc 1.10.1 crashes on its own HTTPS:
    civetweb against OpenSSL 3). With ``client_ca``, a client must show a certificate that CA signed."""

    def __init__(self, target_port: int, pair: Pair, client_ca: Path | None = None):
        import socketserver
        import ssl
        import threading

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(client_ca) if client_ca else None)
        ctx.load_cert_chain(str(pair.cert), str(pair.key))
        ctx.verify_mode = ssl.CERT_REQUIRED if client_ca else ssl.CERT_NONE

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                import socket

                try:
                    tls = ctx.wrap_socket(self.request, server_side=True)
                except (ssl.SSLError, OSError):
                    return  # the client's certificate check failed, or it gave up
                with tls, socket.create_connection(("127.0.0.1", target_port)) as up:
                    back = threading.Thread(target=_pipe, args=(up, tls), daemon=True)
                    back.start()
                    _pipe(tls, up)
                    back.join(10)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads, allow_reuse_address = True, True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _pipe(src, dst) -> None:
    import socket

    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
