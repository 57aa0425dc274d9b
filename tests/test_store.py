"""The results store, run against the embedded SQLite default and a real PostgreSQL server."""

from __future__ import annotations

import hashlib
import os
import stat
from datetime import datetime, timedelta, timezone

import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("alembic")
pytest.importorskip("argon2")

from sqlalchemy import select, text  # noqa: E402
from sqlalchemy.exc import DBAPIError  # noqa: E402

from sonoseg.store import Store  # noqa: E402
from sonoseg.store import accounts, audit, jobs  # noqa: E402
from sonoseg.store.blobs import ArtefactError  # noqa: E402
from sonoseg.store.db import current_revision, head_revision  # noqa: E402
from sonoseg.store.models import AuditEvent, Job, Result, Study  # noqa: E402
from sonoseg.store.pseudonym import InstanceIds, identify  # noqa: E402
from sonoseg.store.results import ArtefactIn, ResultFilter, ResultIn, query_results, save_result  # noqa: E402


def _job(st, status="running", job_id=None):
    import uuid

    jid = job_id or uuid.uuid4().hex
    with st.session() as s, s.begin():
        s.add(Job(id=jid, status=status, format="image", input_sha256="0" * 64, input_size=1, created_by="t",
                  attempts=1 if status == "running" else 0,
                  error="test" if status == "failed" else None))
    return jid


def _result(label=None, diameter=10.0, area=50.0, data=b"mask", model="m.pt"):
    return ResultIn(model_name=model, model_version="1", model_sha256="a" * 64, kind="image", frames=1,
                    unit="mm", max_area=area, max_diameter=diameter, summary={"k": 1}, label=label,
                    probabilities={label: 0.9} if label else None,
                    artefacts=[ArtefactIn("mask", "image/png", data=data), ArtefactIn("overlay", "image/png", data=data + b"o")])


def _ids(n: int) -> InstanceIds:
    h = hashlib.sha256(str(n).encode()).hexdigest()
    return InstanceIds(f"ST-{h[:12].upper()}", h, h, h)


def test_migrations_reach_head_and_match_models(store):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from sonoseg.store.models import Base

    assert current_revision(store.engine) == head_revision() == "0004"
    with store.engine.connect() as c:
        assert compare_metadata(MigrationContext.configure(c), Base.metadata) == []


def test_upgrade_from_first_release_keeps_data(tmp_path, store_url):
    st = Store(tmp_path / "old", store_url)
    st.migrate("0001")
    assert current_revision(st.engine) == "0001"
    with st.engine.begin() as c:  # rows as the first release wrote them
        c.execute(text("INSERT INTO users (username, password_hash, role, disabled, created_at) "
                       "VALUES ('old', 'h', 'admin', false, :t)"), {"t": datetime.now(timezone.utc)})
        c.execute(text("INSERT INTO audit_events (at, actor, action, outcome) VALUES (:t, 'old', 'login', 'ok')"),
                  {"t": datetime.now(timezone.utc)})
        c.execute(text("UPDATE audit_events SET actor='edited'"))  # allowed before 0002
    st.migrate()
    assert current_revision(st.engine) == "0004"
    with st.session() as s:
        assert accounts.get_user(s, "old").role == "admin"
        assert s.scalar(select(AuditEvent.actor)) == "edited"
    with pytest.raises(DBAPIError, match="append-only"), st.engine.begin() as c:
        c.execute(text("UPDATE audit_events SET actor='again'"))
    st.dispose()


def test_audit_log_is_append_only(store):
    with store.session() as s, s.begin():
        audit.record(s, "alice", "read", "result:1", "127.0.0.1")
    for stmt in ("UPDATE audit_events SET actor='x'", "DELETE FROM audit_events"):
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as c:
            c.execute(text(stmt))
    with store.session() as s:
        assert [(e.actor, e.target) for e in s.scalars(select(AuditEvent))] == [("alice", "result:1")]


def test_artefacts_checksummed_on_read_and_names_validated(store):
    sha, size = store.blobs.put_bytes(b"hello")
    assert sha == hashlib.sha256(b"hello").hexdigest() and size == 5
    assert store.blobs.read(sha) == b"hello"
    p = store.blobs.path(sha)
    os.chmod(p, 0o600)
    p.write_bytes(b"hellO")
    with pytest.raises(ArtefactError, match="checksum"):
        store.blobs.read(sha)
    for bad in ("../secret.key", "..", "a" * 63, "A" * 64, "/etc/passwd", "0" * 64 + "/x"):
        with pytest.raises(ArtefactError, match="invalid"):
            store.blobs.path(bad)


def test_result_write_is_all_or_nothing_and_orphans_are_cleaned(store):
    jid = _job(store)
    rid = save_result(store, jid, _ids(1), _result("benign"), {"frames": 1, "rows": 4, "columns": 5})
    with store.session() as s:
        r = s.get(Result, rid)
        assert {a.kind for a in r.artefacts} == {"mask", "overlay"}
        assert s.get(Job, jid).status == "done"
        assert store.blobs.read(r.artefacts[0].sha256) in (b"mask", b"masko")
    # a write for a job that is not running fails as a whole: no result row, files become orphans
    jid2 = _job(store, status="failed")
    with pytest.raises(RuntimeError):
        save_result(store, jid2, _ids(2), _result("malignant", data=b"other"), {})
    with store.session() as s:
        assert s.scalar(select(Result).where(Result.job_id == jid2)) is None
        assert s.scalar(select(Study).where(Study.pseudonym == _ids(2).study_pseudonym)) is None
    orphan = hashlib.sha256(b"other").hexdigest()
    assert store.blobs.path(orphan).exists()
    (store.blobs.tmp / "crashed.part").write_bytes(b"half")
    out = store.cleanup()
    assert out["orphan_artefacts"] == 3  # two orphan artefacts + the half-written temporary file
    assert not store.blobs.path(orphan).exists() and not list(store.blobs.tmp.iterdir())
    assert store.blobs.read(hashlib.sha256(b"mask").hexdigest()) == b"mask"  # referenced ones kept
    assert store.integrity_check() == []


def test_results_separated_per_class_and_filtered(store):
    specs = [("benign", 5.0), ("benign", 15.0), ("malignant", 25.0), ("normal", 0.0), (None, 8.0)]
    for i, (label, d) in enumerate(specs):
        save_result(store, _job(store), _ids(i), _result(label, diameter=d, data=f"m{i}".encode()), {})
    with store.session() as s:
        total, rows = query_results(s, ResultFilter(), None, 0, 100)
        assert total == 5
        total, rows = query_results(s, ResultFilter(), ["benign"], 0, 100)
        assert total == 2 and {r.label for r in rows} == {"benign"}
        total, rows = query_results(s, ResultFilter(label="malignant"), ["benign"], 0, 100)
        assert total == 0  # a restricted user cannot widen the restriction with a filter
        total, rows = query_results(s, ResultFilter(label="unclassified"), None, 0, 100)
        assert total == 1 and rows[0].label is None
        total, rows = query_results(s, ResultFilter(min_diameter=6, max_diameter=20), None, 0, 100)
        assert sorted(r.max_diameter for r in rows) == [8.0, 15.0]
        total, rows = query_results(s, ResultFilter(), None, 1, 2)
        assert total == 5 and len(rows) == 2
        future = datetime.now(timezone.utc) + timedelta(days=1)
        assert query_results(s, ResultFilter(since=future), None, 0, 10)[0] == 0
        assert query_results(s, ResultFilter(model="other.pt"), None, 0, 10)[0] == 0


def test_accounts_and_keys(store):
    with store.session() as s, s.begin():
        u = accounts.create_user(s, "alice", "correct horse", "operator", ["benign"])
        assert u.password_hash.startswith("$argon2id$") and "correct" not in u.password_hash
        with pytest.raises(accounts.AccountError):
            accounts.create_user(s, "alice", "another pass", "viewer")
        with pytest.raises(accounts.AccountError):
            accounts.create_user(s, "bob", "short", "viewer")
        with pytest.raises(accounts.AccountError):
            accounts.create_user(s, "bob'; DROP TABLE users;--", "long enough", "viewer")
        k, key = accounts.create_key(s, store.secret, "alice", "scanner")
    with store.session() as s, s.begin():
        assert accounts.authenticate(s, "alice", "correct horse").allowed_classes() == ["benign"]
        assert accounts.authenticate(s, "alice", "wrong horse") is None
        assert accounts.authenticate(s, "nobody", "correct horse") is None
        assert key not in repr(s.scalars(select(text("key_hash")).select_from(text("api_keys"))).all())
        assert accounts.key_user(s, store.secret, key)[1].username == "alice"
        assert accounts.key_user(s, store.secret, key[:-1] + ("A" if key[-1] != "A" else "B")) is None
        accounts.revoke_key(s, k.prefix)
    with store.session() as s, s.begin():
        assert accounts.key_user(s, store.secret, key) is None
        accounts.set_disabled(s, "alice")
    with store.session() as s:
        assert accounts.authenticate(s, "alice", "correct horse") is None


def test_job_queue_claims_once_and_recovers(store):
    a, b = _job(store, "queued"), _job(store, "queued")
    with store.session() as s:
        first = jobs.claim_next(s)
        second = jobs.claim_next(s)
        assert {first.id, second.id} == {a, b} and jobs.claim_next(s) is None
    with store.session() as s:
        s.execute(text("UPDATE jobs SET attempts = 2 WHERE id = :i"), {"i": b})
        s.commit()
        assert jobs.recover(s) == {"requeued": 1, "failed": 1}
        assert s.get(Job, a).status == "queued"
        assert s.get(Job, b).status == "failed" and "interrupted" in s.get(Job, b).error


def test_pseudonyms_hide_patient_identifiers(store, tmp_path):
    import pydicom

    from sonoseg.infer.default_model import sample_dicom_dir

    src = sorted(sample_dicom_dir().glob("*.dcm"))[0]
    ds = pydicom.dcmread(src)
    ds.PatientName, ds.PatientID = "DOE^JANE", "PID-998877"
    f = tmp_path / "x.dcm"
    ds.save_as(f)
    ids = identify(f, "dicom", store.secret, "0" * 64)
    save_result(store, _job(store), ids, _result("benign"), {})
    with store.engine.connect() as c:
        dump = " ".join(str(row) for t in ("studies", "series", "instances", "results", "jobs")
                        for row in c.execute(text(f"SELECT * FROM {t}")))
    for secret in ("DOE", "PID-998877", str(ds.StudyInstanceUID), str(ds.SOPInstanceUID)):
        assert secret not in dump
    assert ids.study_pseudonym in dump and ids.instance_hash in dump


def test_sqlite_files_are_owner_only(tmp_path):
    st = Store(tmp_path / "data")
    st.open()
    with st.session() as s, s.begin():
        audit.record(s, "a", "x")
    for p in (st.data, st.blobs.root, st.spool):
        assert stat.S_IMODE(p.stat().st_mode) == 0o700, p
    for p in (st.data / "sonoseg.db", st.data / "sonoseg.db-wal", st.data / "secret.key"):
        assert p.exists() and stat.S_IMODE(p.stat().st_mode) == 0o600, p
    with st.engine.connect() as c:
        assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    st.dispose()


def test_readers_do_not_wait_for_a_writer(store):
    """While a write transaction is open, read-only sessions still answer (with the committed state)."""
    from sqlalchemy import func

    with store.session() as s, s.begin():
        audit.record(s, "a", "committed")
    with store.session() as w, w.begin():
        audit.record(w, "b", "pending")
        w.flush()  # the writer holds its lock now
        with store.reader() as r:
            assert r.scalar(select(func.count()).select_from(AuditEvent)) == 1
    with store.reader() as r:
        assert r.scalar(select(func.count()).select_from(AuditEvent)) == 2
