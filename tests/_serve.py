"""Helpers for the serve tests: an app over a fresh store, users of each role, sample uploads."""

from __future__ import annotations

import uuid
from pathlib import Path

from sonoseg.infer.default_model import sample_dicom_dir
from sonoseg.serve.app import create_app
from sonoseg.serve.settings import Settings
from sonoseg.store import Store, accounts
from sonoseg.store.models import Job
from sonoseg.store.pseudonym import InstanceIds
from sonoseg.store.results import ArtefactIn, ResultIn, save_result

PASSWORDS = {"admin": "admin-pass-123", "operator": "operator-pass-123", "viewer": "viewer-pass-123",
             "benign_only": "benign-pass-123"}


def samples() -> list[Path]:
    return sorted(sample_dicom_dir().glob("*.dcm"))


_TEMPLATE: dict = {}


def _add_users(st: Store) -> None:
    with st.session() as s, s.begin():
        for name, pw in PASSWORDS.items():
            role = "viewer" if name == "benign_only" else name
            accounts.create_user(s, name, pw, role, ["benign"] if name == "benign_only" else None)


def make_store(data: Path, url=None) -> Store:
    """A migrated store with one user per role. SQLite stores are copied from a template built once
    per test process (argon2 hashing is deliberately slow; no need to pay it in every test)."""
    import shutil
    import tempfile

    if url is not None:
        st = Store(data, url)
        st.open()
        _add_users(st)
        return st
    if "sqlite" not in _TEMPLATE:
        tpl = Path(tempfile.mkdtemp(prefix="sonoseg-tpl-")) / "data"
        t = Store(tpl)
        t.open()
        _add_users(t)
        t.dispose()  # last connection closed: the WAL is checkpointed into the file
        _TEMPLATE["sqlite"] = tpl
    shutil.copytree(_TEMPLATE["sqlite"], data)
    st = Store(data)
    st.open()
    return st


def make_app(st: Store, **kw):
    kw.setdefault("worker", False)
    return create_app(Settings(st.data, st.url, **kw), store=st)


def login(client, user: str) -> dict:
    r = client.post("/api/v1/auth/token", data={"username": user, "password": PASSWORDS[user]})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def seed_result(st: Store, label, diameter: float = 10.0, png: bytes = b"\x89PNG fake") -> int:
    """A stored result without running the model (for API tests that only read)."""
    jid = uuid.uuid4().hex
    with st.session() as s, s.begin():
        s.add(Job(id=jid, status="running", format="image", input_sha256="0" * 64, input_size=1, created_by="t",
                  attempts=1))
    h = uuid.uuid4().hex * 2
    r = ResultIn(model_name="m.pt", model_version="1", model_sha256="a" * 64, kind="image", frames=1, unit="mm",
                 max_area=1.0, max_diameter=diameter, summary={}, label=label,
                 probabilities={label: 0.8} if label else None,
                 artefacts=[ArtefactIn("mask", "image/png", data=png + jid.encode()),
                            ArtefactIn("overlay", "image/png", data=png + b"o" + jid.encode()),
                            ArtefactIn("measurements", "application/json", data=b'{"unit": "mm", "structures": []}'),
                            ArtefactIn("frame_image", "image/png", data=png + b"f" + jid.encode(), frame=0),
                            ArtefactIn("frame_mask", "image/png", data=png + b"m" + jid.encode(), frame=0)])
    return save_result(st, jid, InstanceIds("ST-" + h[:12].upper(), h, h, h), r, {})


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout: float, every: float = 0.2, what: str = "condition"):
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class ThreadServer:
    """uvicorn serving an app on a loopback port from a thread of this process."""

    def __init__(self, app):
        import threading

        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        wait_until(lambda: self.server.started, 60, what="server start")
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(60)


def stop_process(proc, timeout: float = 60) -> None:
    """SIGTERM (graceful: the worker finishes its job), then SIGKILL if it does not stop in time."""
    import signal
    import subprocess

    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(30)
