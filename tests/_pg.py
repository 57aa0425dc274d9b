"""A real, throw-away PostgreSQL server for tests: initdb + pg_ctl on a temporary folder and a
loopback port (as the ``postgres`` user when running as root, since postgres refuses root)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

PASSWORD = "sonoseg-test-" + uuid.uuid4().hex[:8]


def pg_bindir() -> Path | None:
    for cand in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(cand, "initdb").exists() and Path(cand, "pg_ctl").exists():
            return Path(cand)
    w = shutil.which("pg_ctl")
    return Path(w).resolve().parent if w and shutil.which("initdb") else None


_HANDED_OUT: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A loopback port for a test server to bind later, picked below the kernel's ephemeral range.

    A port from ``bind(0)`` lies inside that range, where any outgoing connection (pynetdicom, HTTP) may
    take it before the server binds it: CI once saw Orthanc exit with "port ... already in use" that way.
    Ports below the range are only ever taken by a bind, and none is handed out twice in one run."""
    import random

    lo = _ephemeral_range()[0]
    rng = random.Random()
    for _ in range(500):
        port = rng.randrange(max(1024, lo - 12000), lo)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError("no free loopback port below the ephemeral range")


class PgServer:
    def __init__(self):
        self.bindir = pg_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="sonoseg-pg-"))
        self.port = free_port()
        self.as_user = "postgres" if os.geteuid() == 0 else None
        os.chmod(self.root, 0o700)
        if self.as_user:
            shutil.chown(self.root, self.as_user, self.as_user)

    def _run(self, *args: str) -> None:
        cmd = ([ "runuser", "-u", self.as_user, "--"] if self.as_user else []) + list(args)
        subprocess.run(cmd, check=True, capture_output=True, timeout=120, cwd="/")

    def start(self) -> "PgServer":
        pw = self.root / "pw"
        pw.write_text(PASSWORD)
        if self.as_user:
            shutil.chown(pw, self.as_user, self.as_user)
        data = self.root / "data"
        self._run(str(self.bindir / "initdb"), "-D", str(data), "-U", "sonoseg", "-A", "scram-sha-256",
                  f"--pwfile={pw}", "--no-sync", "-E", "UTF8")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(data), "-l", str(self.root / "log"), "-w", "-t", "60",
                  "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                        "-c max_connections=60", "start")
        return self

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://sonoseg:{PASSWORD}@127.0.0.1:{self.port}/{db}"

    def new_database(self) -> str:
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url().replace("postgresql://", "postgresql://", 1), autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
