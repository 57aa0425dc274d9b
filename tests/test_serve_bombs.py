"""Pixel bombs cannot take the service down (issue 24 item 2): the upload check and the worker refuse
them from the header, before anything is decoded; a job a dead server left running is not retried
into the same death. Bombs are built in bounded memory (tests/upload_bombs.py)."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

import upload_bombs as ub  # noqa: E402
from _serve import login, make_app, make_store  # noqa: E402
from sonoseg.serve.guard import Limits, declared  # noqa: E402
from sonoseg.serve.uploads import Spooled  # noqa: E402
from sonoseg.serve.worker import Worker  # noqa: E402
from sonoseg.store import jobs  # noqa: E402
from sonoseg.store.models import Job  # noqa: E402


@pytest.fixture
def env(tmp_path):
    st = make_store(tmp_path / "data")
    with TestClient(make_app(st)) as c:
        yield st, c, login(c, "operator")
    st.dispose()


BOMBS = [
    ("png 30000x30000 (header)", lambda: ub.png(30000, 30000, full=False), ".png", "30000 x 30000"),
    ("png 65535x65535 rgb", lambda: ub.png(65535, 65535, colour=2, full=False), ".png", "65535 x 65535"),
    ("png 9000x9000 full", lambda: ub.png(9000, 9000), ".png", "9000 x 9000"),
    ("jpeg 20000x20000", lambda: ub.jpeg(20000, 20000), ".jpg", "20000 x 20000"),
    ("jpeg 6000x6000", lambda: ub.jpeg(6000, 6000), ".jpg", "6000 x 6000"),
    ("dicom rle 65535x65535", lambda: ub.dicom_rle_header(65535, 65535, 1), ".dcm", "65535 x 65535"),
    ("dicom rle 1024x1024x900", lambda: ub.dicom_rle_header(1024, 1024, 900), ".dcm", "900 frame"),
    ("dicom deflated 2000x2000x60", lambda: ub.dicom_deflated(2000, 2000, 60), ".dcm", "inflates past"),
    ("nifti 30000x30000", lambda: ub.nifti((30000, 30000, 1), full=False), ".nii.gz", "30000 x 30000"),
    ("nifti 1024x1024x500", lambda: ub.nifti((1024, 1024, 500)), ".nii.gz", "500 frame"),
]


@pytest.mark.parametrize("name,build,suffix,words", BOMBS, ids=[b[0] for b in BOMBS])
def test_bomb_upload_refused_from_the_header(env, name, build, suffix, words):
    st, c, h = env
    r = c.post("/api/v1/jobs", files={"files": (f"bomb{suffix}", build())}, headers=h)
    assert r.status_code == 413, (name, r.status_code, r.text)
    detail = r.json()["detail"]
    assert words in detail and "\n" not in detail and str(st.data) not in detail, detail
    with st.session() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0
    assert list(st.spool.iterdir()) == [] and list(st.work.iterdir()) == []


def test_header_parsers_agree_with_the_files(tmp_path):
    import cv2
    import numpy as np

    lim = Limits.of(1 << 20)
    cases = [("a.png", cv2.imencode(".png", np.zeros((37, 53, 3), np.uint8))[1].tobytes(), "image", (37, 53, 1, 3)),
             ("b.jpg", cv2.imencode(".jpg", np.zeros((41, 29), np.uint8))[1].tobytes(), "image", (41, 29, 1, 1)),
             ("c.dcm", ub.dicom_rle_header(64, 48, 7), "dicom", (64, 48, 7, 1)),
             ("d.nii.gz", ub.nifti((20, 30, 4)), "nifti", (30, 20, 4, 1))]
    for name, data, fmt, want in cases:
        p = tmp_path / name
        p.write_bytes(data)
        d = declared(p, fmt, lim)
        assert (d.rows, d.columns, d.frames, d.samples) == want, name


def _queue(st, tmp_path, data: bytes, suffix: str, fmt: str) -> str:
    tmp = st.work / f"x{suffix}"
    tmp.write_bytes(data)
    return jobs.enqueue(st, [Spooled(tmp, fmt, "0" * 64, len(data))], "pacs")[0]


def test_worker_refuses_over_budget_jobs_before_decoding(tmp_path, tiny_model):
    """Jobs can reach the queue without the upload check (``pacs --store``, an older release):
    the worker applies the budget itself and never loads the model for them."""
    import cv2
    import numpy as np

    st = make_store(tmp_path / "data")
    big = cv2.imencode(".png", np.zeros((3000, 3000), np.uint8))[1].tobytes()
    jid = _queue(st, tmp_path, big, ".png", "image")
    w = Worker(st, model=tiny_model, limits=Limits.of(128))
    assert w.run_once()
    with st.session() as s:
        job = s.get(Job, jid)
        assert job.status == "failed" and "worker's budget of 128 MB" in job.error and "Error" not in job.error
    assert w._predictor is None  # nothing was decoded or predicted
    assert st.find_spooled(jid) is None
    st.dispose()


def test_restart_does_not_retry_a_job_that_may_have_exhausted_memory(tmp_path):
    import cv2
    import numpy as np

    st = make_store(tmp_path / "data")
    heavy = _queue(st, tmp_path, cv2.imencode(".png", np.zeros((2500, 2500), np.uint8))[1].tobytes(), ".png", "image")
    light = _queue(st, tmp_path, cv2.imencode(".png", np.zeros((64, 64), np.uint8))[1].tobytes(), ".png", "image")
    with st.session() as s:  # both were running when the server died (e.g. killed for memory)
        assert jobs.claim_next(s).id == heavy
    with st.session() as s:
        assert jobs.claim_next(s).id == light
    with TestClient(make_app(st, job_memory_mb=400)) as c:
        assert c.app.state.recovered == {"requeued": 1, "failed": 1}
    with st.session() as s:
        h, lt = s.get(Job, heavy), s.get(Job, light)
        assert h.status == "failed" and "not retried" in h.error
        assert lt.status == "queued"
    st.dispose()
