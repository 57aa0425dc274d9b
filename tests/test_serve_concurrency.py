"""N parallel loopback clients upload and read at once (bounded count and time): every upload ends as
exactly one stored result, every read is complete and checksummed. SQLite and real PostgreSQL."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from sqlalchemy import func, select  # noqa: E402

from _serve import PASSWORDS, ThreadServer, make_app, make_store, samples, wait_until  # noqa: E402
from sonoseg.store.models import Job, Result  # noqa: E402

CLIENTS = 4
UPLOADS_EACH = 2


def _client(url: str, i: int) -> dict:
    with httpx.Client(base_url=url, timeout=60) as c:
        tok = c.post("/api/v1/auth/token", data={"username": "operator", "password": PASSWORDS["operator"]}).json()
        c.headers["Authorization"] = f"Bearer {tok['access_token']}"
        ids = []
        for k in range(UPLOADS_EACH):
            p = samples()[(i + k) % len(samples())]
            r = c.post("/api/v1/jobs", files={"files": (p.name, p.read_bytes())})
            assert r.status_code == 202, r.text
            ids += [j["id"] for j in r.json()["jobs"]]
            c.get("/api/v1/results", params={"limit": 5}).raise_for_status()  # reads while others write
        wait_until(lambda: all(c.get(f"/api/v1/jobs/{j}").json()["status"] in ("done", "failed") for j in ids), 240,
                   every=0.5, what="jobs of client %d" % i)
        reads = 0
        for j in ids:
            job = c.get(f"/api/v1/jobs/{j}").json()
            assert job["status"] == "done", job
            res = c.get(job["result_url"]).json()
            for kind in ("overlay", "mask"):
                f = c.get(res["files"][kind])
                assert hashlib.sha256(f.content).hexdigest() == res["checksums"][kind]
                reads += 1
        return {"jobs": ids, "reads": reads}


@pytest.mark.slow
def test_parallel_clients_store_each_result_once(tmp_path, store_url):
    st = make_store(tmp_path / "data", store_url)
    app = make_app(st, worker=True, poll_s=0.1)
    with ThreadServer(app) as srv, ThreadPoolExecutor(CLIENTS) as pool:
        outs = list(pool.map(lambda i: _client(srv.url, i), range(CLIENTS)))
    ids = [j for o in outs for j in o["jobs"]]
    assert len(ids) == len(set(ids)) == CLIENTS * UPLOADS_EACH
    assert sum(o["reads"] for o in outs) == 2 * len(ids)
    with st.session() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == len(ids)
        per_job = dict(s.execute(select(Result.job_id, func.count()).group_by(Result.job_id)).all())
        assert per_job == {j: 1 for j in ids}
    assert st.integrity_check() == []
    st.dispose()
