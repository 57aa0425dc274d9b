"""`sonoseg users` / `sonoseg keys`: accounts and keys from the command line, into the same store."""

from __future__ import annotations

import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("argon2")

from typer.testing import CliRunner  # noqa: E402

from sonoseg.cli.main import app  # noqa: E402
from sonoseg.store import Store, accounts  # noqa: E402


def test_users_and_keys_cli(tmp_path):
    d = ["--data", str(tmp_path / "data")]
    run = CliRunner().invoke
    r = run(app, ["users", "add", "alice", "--role", "operator", "--classes", "benign", "--password-stdin", *d],
            input="a-long-password\n")
    assert r.exit_code == 0, r.output
    r = run(app, ["users", "add", "alice", "--role", "viewer", "--password-stdin", *d], input="another-password\n")
    assert r.exit_code == 2 and "already exists" in r.output
    r = run(app, ["users", "add", "bob", "--role", "root", "--password-stdin", *d], input="another-password\n")
    assert r.exit_code == 2 and "role must be one of" in r.output
    r = run(app, ["keys", "create", "--user", "alice", "--name", "scanner", *d])
    assert r.exit_code == 0, r.output
    key = r.output.strip().splitlines()[-1]
    assert key.startswith("sk_")
    st = Store(tmp_path / "data")
    with st.session() as s:
        assert accounts.authenticate(s, "alice", "a-long-password").allowed_classes() == ["benign"]
        assert accounts.key_user(s, st.secret, key)[1].username == "alice"
    r = run(app, ["keys", "list", *d], env={"COLUMNS": "60"})
    assert key.split("_")[1] in r.output and key not in r.output
    assert run(app, ["keys", "revoke", key.split("_")[1], *d]).exit_code == 0
    assert run(app, ["users", "disable", "alice", *d]).exit_code == 0
    with st.session() as s:
        assert accounts.key_user(s, st.secret, key) is None
        assert accounts.authenticate(s, "alice", "a-long-password") is None
    r = run(app, ["users", "list", *d], env={"COLUMNS": "60"})
    assert "alice" in r.output and "disabled" in r.output
    st.dispose()
