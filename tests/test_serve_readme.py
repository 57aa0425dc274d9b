"""The README's Python client example (the ```py block after the API table) runs as written against a
live server: it signs in, uploads a study, waits for the job and saves the mask."""

from __future__ import annotations

import re
import shutil

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from _serve import PASSWORDS, ThreadServer, make_app, make_store, samples  # noqa: E402
from conftest import REPO  # noqa: E402


@pytest.mark.slow
def test_readme_client_example(tmp_path, monkeypatch):
    blocks = re.findall(r"```py\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    (code,) = [b for b in blocks if "/auth/token" in b]
    st = make_store(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    shutil.copy(samples()[0], tmp_path / "study.dcm")
    with ThreadServer(make_app(st, worker=True, poll_s=0.2)) as srv:
        code = code.replace("http://127.0.0.1:8000", srv.url)
        env = {"__name__": "__readme__", "pw": PASSWORDS["admin"]}
        exec(compile(code, "README.md", "exec"), env)
    assert env["result"]["model"]["name"] == "breast_accurate.pt"  # serve's default: the accurate tier
    assert (tmp_path / "mask.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    st.dispose()
