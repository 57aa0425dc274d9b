"""Service trust boundaries (issue 24): login throttling that cannot lock the admin out, the last
admin kept, redirects that ignore Host, timezone-aware times on both backends, a client hanging up
mid-upload, and a database that cannot be opened."""

from __future__ import annotations

import logging
import socket
import uuid
from datetime import datetime, timedelta, timezone

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from _serve import PASSWORDS, ThreadServer, login, make_app, make_store, seed_result  # noqa: E402
from sonoseg.cli.main import app as cli  # noqa: E402
from sonoseg.serve.throttle import LoginLimiter, LoginPolicy  # noqa: E402


@pytest.fixture
def env(tmp_path):
    st = make_store(tmp_path / "data")
    app = make_app(st, login_attempts=5, login_user_ceiling=8, login_slow_s=0.01)
    with TestClient(app) as c:
        yield st, app, c
    st.dispose()


def _token(c, user, password):
    return c.post("/api/v1/auth/token", data={"username": user, "password": password})


# --- item 9: redirects -------------------------------------------------------------------------

def test_redirects_never_reflect_the_host_header(env):
    st, app, c = env
    for path in ("/", "/viewer", "/api/v1/jobs/"):
        r = c.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
        assert 300 <= r.status_code < 400, (path, r.status_code)
        loc = r.headers["location"]
        assert "evil.example" not in loc and loc.startswith("/") and not loc.startswith("//"), (path, loc)
    app2 = make_app(st, public_url="https://sonoseg.example.org")
    with TestClient(app2) as c2:
        r = c2.get("/viewer", headers={"Host": "evil.example"}, follow_redirects=False)
        assert r.headers["location"] == "https://sonoseg.example.org/viewer/"


# --- item 3: lockout --------------------------------------------------------------------------

def test_lockout_is_per_user_and_client_and_the_admin_gets_in_elsewhere(env):
    st, app, c = env
    for _ in range(5):
        assert _token(c, "admin", "wrong-password").status_code == 401
    r = _token(c, "admin", PASSWORDS["admin"])
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    # the same client may still sign in as someone else ...
    assert _token(c, "viewer", PASSWORDS["viewer"]).status_code == 200
    # ... and the real admin, from another client, is not locked out
    other = TestClient(app, client=("10.1.2.3", 40000))
    assert _token(other, "admin", PASSWORDS["admin"]).status_code == 200


def test_behind_a_trusted_proxy_clients_are_told_apart(tmp_path):
    st = make_store(tmp_path / "data")
    app = make_app(st, trusted_proxies="127.0.0.1")
    proxy = TestClient(app, client=("127.0.0.1", 40000))  # every request arrives from the TLS proxy
    for _ in range(5):
        r = proxy.post("/api/v1/auth/token", data={"username": "admin", "password": "wrong-password"},
                       headers={"X-Forwarded-For": "203.0.113.7"})
        assert r.status_code == 401
    r = proxy.post("/api/v1/auth/token", data={"username": "admin", "password": PASSWORDS["admin"]},
                   headers={"X-Forwarded-For": "203.0.113.7"})
    assert r.status_code == 429
    r = proxy.post("/api/v1/auth/token", data={"username": "admin", "password": PASSWORDS["admin"]},
                   headers={"X-Forwarded-For": "198.51.100.2"})
    assert r.status_code == 200
    # an untrusted peer cannot pick its address with the header
    direct = TestClient(app, client=("192.0.2.9", 40000))
    r = direct.post("/api/v1/auth/token", data={"username": "admin", "password": "wrong-password"},
                    headers={"X-Forwarded-For": "198.51.100.2"})
    assert r.status_code == 401
    ips = {e["ip"] for e in proxy.get("/api/v1/audit", headers=login(proxy, "admin")).json()["items"]}
    assert {"203.0.113.7", "198.51.100.2", "192.0.2.9"} <= ips
    st.dispose()


def test_per_user_ceiling_slows_but_does_not_block(env):
    st, app, c = env
    for i in range(8):  # 8 failures for "admin" from 8 clients: no pair reaches its lockout
        cl = TestClient(app, client=(f"10.9.0.{i}", 40000))
        assert _token(cl, "admin", "wrong-password").status_code == 401
    real = TestClient(app, client=("10.1.2.3", 40000))
    assert _token(real, "admin", PASSWORDS["admin"]).status_code == 200
    events = c.get("/api/v1/audit", params={"action": "login"}, headers=login(c, "admin")).json()
    mine = [e for e in events["items"] if e["ip"] == "10.1.2.3"]
    assert mine and mine[0]["outcome"] == "ok" and mine[0]["detail"] == "slowed"


def test_backoff_doubles_and_success_forgets():
    now = [1000.0]
    lim = LoginLimiter(LoginPolicy(attempts=3, lock_s=60, max_lock_s=3600, user_ceiling=100, client_ceiling=100),
                       clock=lambda: now[0])
    for _ in range(3):
        assert lim.retry_after("admin", "A") is None
        lim.failed("admin", "A")
    assert lim.retry_after("admin", "A") == 61 and lim.retry_after("admin", "B") is None
    now[0] += 61
    assert lim.retry_after("admin", "A") is None
    lim.failed("admin", "A")  # 4th failure: locked twice as long
    assert lim.retry_after("admin", "A") == 121
    now[0] += 121
    lim.failed("admin", "A")
    assert lim.retry_after("admin", "A") == 241
    lim.succeeded("admin", "A")
    assert lim.retry_after("admin", "A") is None
    assert lim.delay("admin") == 0.0


# --- item 10: last admin ----------------------------------------------------------------------

def test_the_last_admin_cannot_be_disabled_or_demoted(env, tmp_path):
    st, app, c = env
    h = login(c, "admin")
    for change in ({"disabled": True}, {"role": "operator"}, {"role": "viewer", "disabled": False}):
        r = c.patch("/api/v1/users/admin", json=change, headers=h)
        assert r.status_code == 409 and "last enabled admin" in r.json()["detail"], (change, r.text)
    assert c.get("/api/v1/me", headers=h).json()["role"] == "admin"
    # with a second admin the first may step down; then the second is the last one
    assert c.patch("/api/v1/users/operator", json={"role": "admin"}, headers=h).status_code == 200
    assert c.patch("/api/v1/users/admin", json={"role": "viewer"}, headers=h).status_code == 200
    h2 = login(c, "operator")
    assert c.patch("/api/v1/users/operator", json={"disabled": True}, headers=h2).status_code == 409
    # the CLI changes roles, under the same rule
    d = ["--data", str(st.data)]
    r = CliRunner().invoke(cli, ["users", "role", "operator", "viewer", *d])
    assert r.exit_code == 2 and "last enabled admin" in r.output
    assert CliRunner().invoke(cli, ["users", "disable", "operator", *d]).exit_code == 2
    r = CliRunner().invoke(cli, ["users", "role", "viewer", "admin", *d])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["users", "role", "viewer", "root", *d])
    assert r.exit_code == 2 and "role must be one of" in r.output
    assert c.get("/api/v1/me", headers=login(c, "viewer")).json()["role"] == "admin"


# --- item 8: time zones -----------------------------------------------------------------------

def test_since_until_with_an_offset_on_both_backends(tmp_path, store_url):
    st = make_store(tmp_path / "data", store_url)
    ids = [seed_result(st, "benign") for _ in range(3)]
    plus1 = timezone(timedelta(hours=1))
    with TestClient(make_app(st)) as c:
        h = login(c, "viewer")
        items = c.get("/api/v1/results", headers=h).json()["items"]
        created = datetime.fromisoformat(items[0]["created_at"])
        assert created.utcoffset() == timedelta(0) and {i["id"] for i in items} == set(ids)
        before, after = (created - timedelta(minutes=30)).astimezone(plus1), (created + timedelta(minutes=30)).astimezone(plus1)
        assert c.get("/api/v1/results", params={"since": before.isoformat()}, headers=h).json()["total"] == 3
        assert c.get("/api/v1/results", params={"since": after.isoformat()}, headers=h).json()["total"] == 0
        assert c.get("/api/v1/results", params={"until": after.isoformat()}, headers=h).json()["total"] == 3
        assert c.get("/api/v1/results", params={"until": before.isoformat()}, headers=h).json()["total"] == 0
        job = c.get("/api/v1/jobs", headers=h).json()["items"][0]
        assert datetime.fromisoformat(job["created_at"]).utcoffset() == timedelta(0)
    st.dispose()


# --- item 11: disconnects and database errors ---------------------------------------------------

class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def test_client_hanging_up_mid_upload_logs_one_line(tmp_path):
    from _serve import wait_until

    st = make_store(tmp_path / "data")
    app = make_app(st)
    with TestClient(app) as c:
        token = login(c, "operator")["Authorization"]
    seen = _Records()
    with ThreadServer(app) as srv:
        # uvicorn's own loggers do not propagate (its dictConfig): listen on them after it configured them
        loggers = [logging.getLogger(n) for n in ("uvicorn.error", "sonoseg.serve")]
        old_level = loggers[1].level
        loggers[1].setLevel(logging.INFO)
        for lg in loggers:
            lg.addHandler(seen)
        try:
            boundary = uuid.uuid4().hex
            head = (f"POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {token}\r\n"
                    f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 1000000\r\n\r\n"
                    f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.dcm\"\r\n\r\n")
            with socket.create_connection(("127.0.0.1", srv.port)) as sock:
                sock.sendall(head.encode() + b"\x00" * 5000)
            wait_until(lambda: any("disconnected" in r.getMessage() or r.exc_info for r in seen.records), 30,
                       what="a log record of the disconnect")
        finally:
            for lg in loggers:
                lg.removeHandler(seen)
            loggers[1].setLevel(old_level)
    assert not [r for r in seen.records if r.exc_info], [r.getMessage() for r in seen.records]
    assert sum("disconnected" in r.getMessage() for r in seen.records) == 1
    assert list(st.spool.iterdir()) == [] and list(st.work.iterdir()) == []
    st.dispose()


def test_serve_with_a_bad_database_ends_with_one_line(tmp_path, pg_server):
    wrong = pg_server.url().replace(":sonoseg-test-", ":wrong-", 1)
    port = pg_server.port
    cases = [(wrong, "password authentication failed"),
             (pg_server.url("no_such_db"), "does not exist"),
             ("postgresql://sonoseg:pw@127.0.0.1:1/x", "127.0.0.1"),
             ("nosuchdriver://x/y", "invalid database URL")]
    for url, words in cases:  # the URL as the README says to pass it: $SONOSEG_DB_URL, not --db (visible in ps)
        r = CliRunner().invoke(cli, ["serve", "--data", str(tmp_path / "d"), "--no-worker"], env={"SONOSEG_DB_URL": url})
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        assert r.exit_code == 2 and len(lines) == 1 and words in lines[0], (url, r.output)
        assert "Traceback" not in r.output and ":pw@" not in r.output and "wrong-" not in r.output
        assert pg_server.url().split(":")[2].split("@")[0] not in r.output  # the real password
