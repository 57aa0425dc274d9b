"""Issue 24 items 5, 6, 12: spooled uploads are owner-only; a refused account never has its password
echoed and the documented database URL keeps passwords off the command line; frame PNGs carry one
cache-control, no-store."""

from __future__ import annotations

import io
import re
import stat

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from _serve import login, make_app, make_store, samples, seed_result  # noqa: E402
from conftest import REPO  # noqa: E402


def _mode(p) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_spooled_uploads_are_owner_only(tmp_path):
    from sonoseg.serve.uploads import spool

    st = make_store(tmp_path / "data")
    sp = spool(io.BytesIO(samples()[0].read_bytes()), st.work, 1 << 30)
    assert _mode(sp.path) == 0o600, oct(_mode(sp.path))
    with TestClient(make_app(st)) as c:  # no worker: the upload stays spooled
        r = c.post("/api/v1/jobs", files={"files": ("a.dcm", samples()[0].read_bytes())}, headers=login(c, "operator"))
        assert r.status_code == 202, r.text
    (spooled,) = list(st.spool.iterdir())
    assert _mode(spooled) == 0o600 and _mode(st.spool) == 0o700
    st.dispose()


def test_refused_user_creation_never_echoes_the_password(tmp_path):
    st = make_store(tmp_path / "data")
    with TestClient(make_app(st)) as c:
        h = login(c, "admin")
        for body in ({"username": "nurse", "password": "Short7!", "role": "viewer"},  # too short
                     {"username": "nurse", "password": "Correct-Horse-42", "role": "superuser"},  # bad role
                     {"username": "bad name!", "password": "Correct-Horse-42", "role": "viewer"}):
            r = c.post("/api/v1/users", json=body, headers=h)
            assert r.status_code == 422, r.text
            assert body["password"] not in r.text
            assert r.json()["detail"] and all({"loc", "msg"} <= set(e) for e in r.json()["detail"])
        assert any(e["loc"][-1] == "password" for e in c.post(
            "/api/v1/users", json={"username": "n", "password": "Short7!", "role": "viewer"}, headers=h).json()["detail"])
    st.dispose()


def test_database_password_stays_off_the_command_line(tmp_path, monkeypatch):
    """The README's PostgreSQL example passes the URL in $SONOSEG_DB_URL, and a password given in --db
    is warned about (it shows in ps) without being printed."""
    from typer.testing import CliRunner

    from sonoseg.cli.main import app
    from sonoseg.serve.settings import Settings

    section = re.search(r"## Results service.*?\n## ", (REPO / "README.md").read_text(), re.S).group(0)
    assert not re.search(r"--db\s+\S*://[^\s/@]*:[^\s/@]*@", section), "README puts a database password in argv"
    assert "SONOSEG_DB_URL" in section and ".pgpass" in section
    monkeypatch.setenv("SONOSEG_DB_URL", "postgresql://sonoseg@127.0.0.1/sonoseg")
    assert Settings.from_env(tmp_path).db_url == "postgresql://sonoseg@127.0.0.1/sonoseg"
    res = CliRunner().invoke(app, ["users", "list", "--data", str(tmp_path / "d"),
                                   "--db", "postgresql://u:hunter2-secret@127.0.0.1:1/x"])
    assert "visible to every user" in res.output and "hunter2-secret" not in res.output


def test_frame_pngs_have_one_no_store_cache_control(tmp_path):
    st = make_store(tmp_path / "data")
    rid = seed_result(st, "benign")
    with TestClient(make_app(st)) as c:
        h = login(c, "viewer")
        for path in (f"/api/v1/results/{rid}/frames/0/image", f"/api/v1/results/{rid}/frames/0/mask",
                     f"/api/v1/results/{rid}/overlay", f"/api/v1/results/{rid}"):
            r = c.get(path, headers=h)
            assert r.status_code == 200, (path, r.text)
            assert r.headers.get_list("cache-control") == ["no-store"], (path, r.headers.get_list("cache-control"))
    st.dispose()
