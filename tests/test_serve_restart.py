"""Kill the server (SIGKILL) while jobs run, restart it: every job ends done or failed with a reason,
nothing lost, nothing duplicated, and the database passes its integrity check."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from sqlalchemy import func, select  # noqa: E402

from _serve import PASSWORDS, free_port, make_store, samples, stop_process, wait_until  # noqa: E402
from sonoseg.store import Store  # noqa: E402
from sonoseg.store.models import Job, Result  # noqa: E402


def _start(data, port, log):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "sonoseg", "serve", "--port", str(port), "--data", str(data)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _healthy(url):
    try:
        return httpx.get(f"{url}/health", timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow
def test_sigkill_mid_job_then_restart(tmp_path):
    data = tmp_path / "data"
    make_store(data).dispose()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "server.log", "wb")
    proc = _start(data, port, log)
    try:
        wait_until(lambda: proc.poll() is None and _healthy(url), 90, what="first server")
        tok = httpx.post(f"{url}/api/v1/auth/token", data={"username": "operator", "password": PASSWORDS["operator"]},
                         timeout=60).json()
        h = {"Authorization": f"Bearer {tok['access_token']}"}
        files = [("files", (p.name, p.read_bytes(), "application/dicom")) for p in samples()]
        r = httpx.post(f"{url}/api/v1/jobs", files=files, headers=h, timeout=60)
        assert r.status_code == 202
        ids = [j["id"] for j in r.json()["jobs"]]
        wait_until(lambda: httpx.get(f"{url}/api/v1/jobs", params={"status": "running"}, headers=h,
                                     timeout=60).json()["total"], 120,
                   every=0.05, what="a running job")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    st = Store(data)
    with st.session() as s:
        assert s.scalar(select(func.count()).select_from(Job).where(Job.status == "running")) >= 1
    st.dispose()

    proc = _start(data, port, log)
    try:
        wait_until(lambda: proc.poll() is None and _healthy(url), 90, what="restarted server")

        def all_ended():
            with httpx.Client(base_url=url, headers=h, timeout=60) as c:  # a busy 2-core CI box is slow
                return all(c.get(f"/api/v1/jobs/{j}").json()["status"] in ("done", "failed") for j in ids)

        wait_until(all_ended, 240, every=0.5, what="jobs to end after restart")
    finally:
        stop_process(proc)
        log.close()
    st = Store(data)
    try:
        with st.session() as s:
            jobs = {j.id: j for j in s.scalars(select(Job))}
            assert set(jobs) == set(ids)  # nothing lost, nothing added
            for j in jobs.values():
                assert j.status == "done" or (j.status == "failed" and j.error), (j.status, j.error)
            per_job = dict(s.execute(select(Result.job_id, func.count()).group_by(Result.job_id)).all())
            assert per_job == {j.id: 1 for j in jobs.values() if j.status == "done"}  # exactly once
            assert any(j.attempts == 2 for j in jobs.values())  # the interrupted one was re-queued
            assert sum(j.status == "done" for j in jobs.values()) == 3
        assert st.integrity_check() == []
        assert list(st.spool.iterdir()) == []
    finally:
        st.dispose()
