"""The audit trail proves itself: chained HMACs, first broken link named, REPLACE/TRUNCATE refused,
the service refuses to start on a broken chain unless told to. SQLite and a real PostgreSQL."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("argon2")

from sqlalchemy import text  # noqa: E402
from sqlalchemy.exc import DBAPIError  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from sonoseg.store import Store, audit  # noqa: E402


def _events(st, n: int, actor: str = "alice") -> None:
    for i in range(n):
        with st.session() as s, s.begin():
            audit.record(s, actor, "read", f"result:{i}", "127.0.0.1")


def _tamper(st, sql: str, params: dict | None = None) -> None:
    """What someone with database access can do: lift the triggers, edit, put them back."""
    with st.engine.begin() as c:
        if st.dialect == "postgresql":
            c.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
            c.execute(text(sql), params or {})
            c.execute(text("ALTER TABLE audit_events ENABLE TRIGGER USER"))
        else:
            c.execute(text("DROP TRIGGER audit_no_update"))
            c.execute(text("DROP TRIGGER audit_no_delete"))
            c.execute(text(sql), params or {})
            for ev in ("UPDATE", "DELETE"):
                c.execute(text(f"CREATE TRIGGER audit_no_{ev.lower()} BEFORE {ev} ON audit_events "
                               "BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END"))


def _ids(st) -> list[int]:
    with st.engine.connect() as c:
        return [r[0] for r in c.execute(text("SELECT id FROM audit_events ORDER BY id"))]


def test_chain_verifies_and_names_the_first_broken_link(store):
    _events(store, 6)
    r = store.verify_audit()
    assert r.ok and r.events == 6 and r.unsealed == 0 and r.head[0] == _ids(store)[-1]
    ids = _ids(store)
    _tamper(store, "UPDATE audit_events SET actor = 'mallory' WHERE id = :i", {"i": ids[2]})
    r = store.verify_audit()
    assert not r.ok and [b[0] for b in r.breaks] == [ids[2]]  # re-anchored: one edit, one break
    assert f"broken at event {ids[2]}" in r.first_line() and "\n" not in r.first_line()
    _tamper(store, "DELETE FROM audit_events WHERE id = :i", {"i": ids[4]})
    r = store.verify_audit()
    assert [b[0] for b in r.breaks] == [ids[2], ids[5]]  # a removed event breaks the link after it


def test_forged_row_with_a_guessed_mac_is_caught(store):
    _events(store, 2)
    with store.engine.begin() as c:  # an append by hand, without the key
        c.execute(text("INSERT INTO audit_events (at, actor, action, outcome, mac) "
                       "VALUES (:t, 'admin', 'user:add', 'ok', :m)"), {"t": datetime.now(timezone.utc), "m": "0" * 64})
    r = store.verify_audit()
    assert not r.ok and r.breaks[0][0] == _ids(store)[-1]


def test_replace_and_truncate_are_refused(store):
    _events(store, 2)
    t, first = datetime.now(timezone.utc), _ids(store)[0]
    if store.dialect == "sqlite":
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as c:
            c.execute(text("INSERT OR REPLACE INTO audit_events (id, at, actor, action, outcome) "
                           "VALUES (:i, :t, 'x', 'login', 'ok')"), {"i": first, "t": t})
    else:
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as c:
            c.execute(text("TRUNCATE audit_events"))
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as c:
            c.execute(text("INSERT INTO audit_events (id, at, actor, action, outcome) VALUES (:i, :t, 'x', 'login', 'ok') "
                           "ON CONFLICT (id) DO UPDATE SET actor = 'x'"), {"i": first, "t": t})
    assert store.verify_audit().ok and len(_ids(store)) == 2


def test_existing_events_are_sealed_by_the_migration(tmp_path, store_url):
    st = Store(tmp_path / "old", store_url)
    st.migrate("0002")
    with st.engine.begin() as c:
        for i in range(3):
            c.execute(text("INSERT INTO audit_events (at, actor, action, outcome) VALUES (:t, 'old', 'login', 'ok')"),
                      {"t": datetime(2026, 1, 1, 12, 0, i, 123456, tzinfo=timezone.utc)})
    st.migrate()
    _events(st, 1)
    r = st.verify_audit()
    assert r.ok and r.events == 4 and r.unsealed == 0
    st.dispose()


def test_concurrent_appends_never_fork_the_chain(store):
    errors = []

    def worker(k):
        try:
            _events(store, 8, actor=f"w{k}")
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    r = store.verify_audit()
    assert r.ok and r.events == 32


def test_service_refuses_a_broken_chain_unless_told(tmp_path, store_url):
    from fastapi.testclient import TestClient

    from _serve import make_app, make_store
    from sonoseg.cli.main import app as cli
    from sonoseg.store.audit import AuditChainBroken

    st = make_store(tmp_path / "data", store_url)
    _events(st, 3)
    ids = _ids(st)
    _tamper(st, "UPDATE audit_events SET outcome = 'ok', actor = 'nobody' WHERE id = :i", {"i": ids[1]})
    d = ["--data", str(st.data)] + (["--db", st.url] if store_url else [])
    r = CliRunner().invoke(cli, ["audit", "verify", *d])
    assert r.exit_code == 1 and f"broken at event {ids[1]}" in r.output and "Traceback" not in r.output
    with pytest.raises(AuditChainBroken, match=f"event {ids[1]}"), TestClient(make_app(st)):
        pass
    r = CliRunner().invoke(cli, ["serve", *d, "--no-worker"])
    assert r.exit_code == 2 and f"broken at event {ids[1]}" in r.output and "Traceback" not in r.output
    with TestClient(make_app(st, accept_broken_audit=True)) as c:
        assert c.get("/health").status_code == 200
    with TestClient(make_app(st)) as c:  # the accepted break is on record: the next start passes
        assert c.get("/health").status_code == 200
    r = CliRunner().invoke(cli, ["audit", "verify", *d])
    assert r.exit_code == 0 and f"accepted break at event {ids[1]}" in r.output and "intact" in r.output
    st.dispose()
