"""Verified access: every route refuses anonymous (401) and too-low roles (403); bad tokens and keys
are refused; login is throttled; hostile filters, paths and uploads get 4xx and leave nothing."""

from __future__ import annotations

import re
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

import jwt  # noqa: E402
from fastapi.routing import APIRoute  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from _serve import PASSWORDS, login, make_app, make_store, samples, seed_result  # noqa: E402
from sonoseg.serve.security import issue_token  # noqa: E402
from sonoseg.store.models import Job  # noqa: E402

# Minimum role per route. The test fails if the app has a route missing here, so a new route must
# be classified (and is then checked) before it can ship.
MIN_ROLE = {
    ("GET", "/api/v1/me"): "viewer",
    ("POST", "/api/v1/jobs"): "operator",
    ("GET", "/api/v1/jobs"): "viewer",
    ("GET", "/api/v1/jobs/{job_id}"): "viewer",
    ("GET", "/api/v1/results"): "viewer",
    ("GET", "/api/v1/results/{result_id}"): "viewer",
    ("GET", "/api/v1/results/{result_id}/{kind}"): "viewer",
    ("GET", "/api/v1/results/{result_id}/frames/{frame}/{layer}"): "viewer",
    ("GET", "/api/v1/users"): "admin",
    ("POST", "/api/v1/users"): "admin",
    ("PATCH", "/api/v1/users/{username}"): "admin",
    ("GET", "/api/v1/keys"): "admin",
    ("POST", "/api/v1/keys"): "admin",
    ("DELETE", "/api/v1/keys/{prefix}"): "admin",
    ("GET", "/api/v1/audit"): "admin",
    ("GET", "/api/v1/openapi.json"): "viewer",
}
PUBLIC = {("GET", "/health"), ("POST", "/api/v1/auth/token"), ("GET", "/")}
PARAMS = {"job_id": "0" * 32, "result_id": "1", "kind": "mask", "frame": "0", "layer": "image", "username": "viewer",
          "prefix": "0" * 8}


def app_routes(app) -> set[tuple[str, str]]:
    """(method, path) of every endpoint, walked from the app itself (included routers too)."""
    out = set()

    def walk(routes, prefix=""):
        for r in routes:
            if isinstance(r, APIRoute):
                out.update((m, prefix + r.path) for m in r.methods)
            elif hasattr(r, "original_router"):  # FastAPI's included-router node
                walk(r.original_router.routes, prefix + r.include_context.prefix)
            elif hasattr(r, "routes") and not hasattr(r, "app"):
                walk(r.routes, prefix)
    walk(app.routes)
    schema_paths = {(m.upper(), p) for p, ops in app.openapi()["paths"].items() for m in ops}
    assert schema_paths <= out, "route walk missed routes the schema lists"
    return out


@pytest.fixture
def env(tmp_path):
    st = make_store(tmp_path / "data")
    app = make_app(st, docs=True, max_upload_bytes=400_000, login_attempts=5)
    with TestClient(app) as c:
        yield st, app, c
    st.dispose()


def _url(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PARAMS[m.group(1)], path)


def test_every_route_needs_auth_and_role(env):
    st, app, c = env
    routes = app_routes(app)
    assert routes - PUBLIC == set(MIN_ROLE), "classify new routes in MIN_ROLE"
    tokens = {role: login(c, role) for role in ("viewer", "operator", "admin")}
    rank = ["viewer", "operator", "admin"]
    for (method, path), need in MIN_ROLE.items():
        url = _url(path)
        r = c.request(method, url)
        assert r.status_code == 401, (method, path, r.status_code)
        assert r.headers.get("www-authenticate") == "Bearer"
        for role in rank[: rank.index(need)]:
            r = c.request(method, url, headers=tokens[role])
            assert r.status_code == 403, (method, path, role, r.status_code)
        r = c.request(method, url, headers=tokens[need])
        assert r.status_code not in (401, 403), (method, path, need, r.status_code)
    assert c.get("/health").json() == {"status": "ok"}
    for docs in ("/docs", "/redoc", "/openapi.json"):
        assert c.get(docs).status_code == 404


def test_tampered_expired_and_revoked_credentials(env):
    st, app, c = env
    good = login(c, "viewer")["Authorization"].split()[1]
    assert c.get("/api/v1/me", headers={"Authorization": f"Bearer {good}"}).json()["username"] == "viewer"
    head, body, sig = good.split(".")
    flipped = sig[:-2] + ("AA" if sig[-2:] != "AA" else "BB")
    claims = jwt.decode(good, options={"verify_signature": False})
    bad = [
        f"{head}.{body}.{flipped}",  # tampered signature
        jwt.encode({**claims, "sub": "admin"}, "wrong-secret-wrong-secret-wrong-secret", algorithm="HS256"),  # forged
        jwt.encode({**claims, "sub": "admin"}, None, algorithm="none"),  # unsigned
        issue_token(st.secret, "viewer", minutes=-1),  # expired
        "not.a.token",
    ]
    for t in bad:
        r = c.get("/api/v1/me", headers={"Authorization": f"Bearer {t}"})
        assert r.status_code == 401, t
    # API keys: shown once, work, refused after revocation; tampered keys refused
    admin = login(c, "admin")
    r = c.post("/api/v1/keys", json={"username": "operator", "name": "scanner"}, headers=admin)
    assert r.status_code == 201
    key, prefix = r.json()["key"], r.json()["prefix"]
    assert key not in c.get("/api/v1/keys", headers=admin).text
    assert c.get("/api/v1/me", headers={"X-API-Key": key}).json()["role"] == "operator"
    assert c.get("/api/v1/me", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert c.get("/api/v1/me", headers={"X-API-Key": key[:-1] + ("x" if key[-1] != "x" else "y")}).status_code == 401
    assert c.delete(f"/api/v1/keys/{prefix}", headers=admin).status_code == 200
    assert c.get("/api/v1/me", headers={"X-API-Key": key}).status_code == 401
    # disabling a user stops their live token at once
    assert c.patch("/api/v1/users/viewer", json={"disabled": True}, headers=admin).status_code == 200
    assert c.get("/api/v1/me", headers={"Authorization": f"Bearer {good}"}).status_code == 401


def test_login_is_rate_limited(env):
    st, app, c = env
    admin = login(c, "admin")
    for _ in range(5):
        assert c.post("/api/v1/auth/token", data={"username": "viewer", "password": "wrong-password"}).status_code == 401
    r = c.post("/api/v1/auth/token", data={"username": "viewer", "password": PASSWORDS["viewer"]})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    # the lockout is per (user name, client): the same client may still sign in as another user
    # (tests/test_serve_trust.py: back-off, the per-user ceiling, the admin from another client)
    r = c.post("/api/v1/auth/token", data={"username": "admin", "password": PASSWORDS["admin"]})
    assert r.status_code == 200
    events = c.get("/api/v1/audit", params={"action": "login"}, headers=admin).json()["items"]
    assert sum(e["outcome"] == "denied" for e in events) == 5
    assert any(e["outcome"] == "throttled" for e in events)


def test_hostile_filters_and_paths_get_4xx(env):
    st, app, c = env
    rid = seed_result(st, "benign")
    h = login(c, "viewer")
    injections = [("label", "benign' OR '1'='1"), ("model", "x' OR 1=1 --"), ("since", "2020'; DROP TABLE results;--"),
                  ("min_diameter", "1 OR 1=1"), ("limit", "1; DELETE FROM jobs"), ("offset", "-1")]
    for k, v in injections:
        r = c.get("/api/v1/results", params={k: v}, headers=h)
        assert 400 <= r.status_code < 500, (k, v, r.status_code)
        assert "Traceback" not in r.text and "sqlite" not in r.text.lower() and "SELECT" not in r.text
    assert c.get("/api/v1/results", headers=h).json()["total"] == 1  # table intact
    secret = (st.data / "secret.key").read_text().strip()
    for path in (f"/api/v1/results/{rid}/..%2F..%2F..%2Fsecret.key", f"/api/v1/results/{rid}/../../secret.key",
                 f"/api/v1/results/{rid}/frames/0/..%2Fsecret.key", "/viewer/../secret.key",
                 "/viewer/..%2F..%2Fdata%2Fsecret.key", "/api/v1/jobs/..%2F..%2Fsecret.key",
                 f"/api/v1/results/{rid}%20OR%201=1"):
        r = c.get(path, headers=h)
        assert 400 <= r.status_code < 500, (path, r.status_code)
        assert secret not in r.text


def test_class_restriction_hides_other_classes(env):
    st, app, c = env
    b, m, u = seed_result(st, "benign"), seed_result(st, "malignant"), seed_result(st, None)
    full, restricted = login(c, "viewer"), login(c, "benign_only")
    assert c.get("/api/v1/results", headers=full).json()["total"] == 3
    lst = c.get("/api/v1/results", headers=restricted).json()
    assert lst["total"] == 1 and lst["items"][0]["id"] == b
    assert c.get("/api/v1/results", params={"label": "malignant"}, headers=restricted).json()["total"] == 0
    for rid in (m, u):
        assert c.get(f"/api/v1/results/{rid}", headers=restricted).status_code == 404
        assert c.get(f"/api/v1/results/{rid}/overlay", headers=restricted).status_code == 404
        assert c.get(f"/api/v1/results/{rid}/frames/0/image", headers=restricted).status_code == 404
    r = c.get(f"/api/v1/results/{b}/overlay", headers=restricted)
    assert r.status_code == 200 and r.headers["x-checksum-sha256"]
    assert c.get("/api/v1/jobs", headers=restricted).json()["total"] == 1


def test_corrupted_artefact_is_refused_not_served(env):
    st, app, c = env
    rid = seed_result(st, "benign")
    h = login(c, "viewer")
    sha = c.get(f"/api/v1/results/{rid}/mask", headers=h).headers["x-checksum-sha256"]
    st.blobs.path(sha).write_bytes(b"tampered")
    r = c.get(f"/api/v1/results/{rid}/mask", headers=h)
    assert r.status_code == 500 and "checksum" in r.json()["detail"] and b"tampered" not in r.content


def _nothing_stored(st):
    with st.session() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0
    assert list(st.spool.iterdir()) == [] and list(st.work.iterdir()) == []


def test_oversized_upload_413_without_storing(env):
    st, app, c = env
    h = login(c, "operator")
    big = b"\x00" * 500_000
    r = c.post("/api/v1/jobs", files={"files": ("big.dcm", big, "application/dicom")}, headers=h)
    assert r.status_code == 413
    # no Content-Length (chunked): cut off while streaming
    def gen():
        yield b"--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"x.dcm\"\r\n\r\n"
        for _ in range(100):
            yield b"\x00" * 10_000
    r = c.post("/api/v1/jobs", content=gen(), headers={**h, "Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413
    _nothing_stored(st)


def test_bad_uploads_refused_with_reason_and_nothing_stored(env, tmp_path):
    import pydicom

    st, app, c = env
    h = login(c, "operator")
    good = samples()[0].read_bytes()
    ds = pydicom.dcmread(samples()[0])
    ds.NumberOfFrames = 0
    zero = tmp_path / "zero.dcm"
    ds.save_as(zero)
    truncated = good[: len(good) // 2]
    import cv2
    import numpy as np

    png = cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes()
    cases = [("notes.txt", b"hello, not an image", 415, "not a DICOM"),
             ("broken.dcm", truncated, 422, ""),
             ("zero.dcm", zero.read_bytes(), 422, "zero frames"),
             ("broken.png", png[:30], 422, ""),
             ("empty.dcm", b"", 400, "empty")]
    for name, data, code, words in cases:
        r = c.post("/api/v1/jobs", files={"files": (name, data)}, headers=h)
        assert r.status_code == code, (name, r.status_code, r.text)
        detail = r.json()["detail"]
        assert name in detail and words in detail and "\n" not in detail and str(st.data) not in detail
    # one bad file among good ones: the whole request is refused, nothing stored
    r = c.post("/api/v1/jobs", files=[("files", ("a.dcm", good)), ("files", ("notes.txt", b"text"))], headers=h)
    assert r.status_code == 415 and "file 2" in r.json()["detail"]
    _nothing_stored(st)
    r = c.post("/api/v1/jobs", files=[("files", ("a.dcm", good)), ("files", ("b.png", png))], headers=h)
    assert r.status_code == 202 and len(r.json()["jobs"]) == 2
    jid = r.json()["jobs"][0]["id"]
    assert c.get(f"/api/v1/jobs/{jid}", headers=h).json()["status"] == "queued"
    with st.session() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 2
    names = sorted(p.name for p in st.spool.iterdir())
    assert len(names) == 2 and all(re.fullmatch(r"[0-9a-f]{32}\.(dcm|png)", n) for n in names)  # client names not kept
