"""``sonoseg keys create|list|revoke``: API keys for machines (shown once, stored hashed)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from sonoseg.cli._common import console, handle_errors
from sonoseg.cli._store_opts import DATA, DB, admin_session, open_store, print_table

keys = typer.Typer(help="API keys of `sonoseg serve` (send as header X-API-Key).", no_args_is_help=True)


@keys.command("create")
@handle_errors
def create(user: str = typer.Option(..., "--user", help="The key acts as this user (and role)."),
           name: str = typer.Option("key", help="A label, e.g. the machine's name."),
           db: Optional[str] = DB, data: Optional[Path] = DATA) -> None:
    """Create a key and print it once: it is stored only as a keyed hash."""
    from sonoseg.store import accounts, audit

    with admin_session(data, db) as (st, s):
        k, key = accounts.create_key(s, st.secret, user, name)
        audit.record(s, "cli", "key:create", f"key:{k.prefix}", "local")
    console.print(f"key {k.prefix} for {user} (store it now, it is not shown again):")
    typer.echo(key)


@keys.command("list")
@handle_errors
def list_(db: Optional[str] = DB, data: Optional[Path] = DATA) -> None:
    """List keys (prefix, owner, state); never the keys themselves."""
    from sqlalchemy import select

    from sonoseg.store.models import ApiKey

    st = open_store(data, db)
    with st.session() as s:
        rows = [(k.prefix, k.name, k.user.username, "revoked" if k.revoked_at else "active")
                for k in s.scalars(select(ApiKey).order_by(ApiKey.id))]
    st.dispose()
    print_table("API keys", ("prefix", "name", "user", "state"), rows)


@keys.command("revoke")
@handle_errors
def revoke(prefix: str = typer.Argument(..., help="The key's prefix (the 8 hex digits after sk_)."),
           db: Optional[str] = DB, data: Optional[Path] = DATA) -> None:
    """Revoke a key: requests with it are refused from now on."""
    from sonoseg.store import accounts, audit

    with admin_session(data, db) as (st, s):
        accounts.revoke_key(s, prefix)
        audit.record(s, "cli", "key:revoke", f"key:{prefix}", "local")
    console.print(f"key {prefix} revoked")


def register(app: typer.Typer) -> None:
    app.add_typer(keys, name="keys")
