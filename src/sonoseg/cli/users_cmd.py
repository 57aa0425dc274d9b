"""``sonoseg users add|list|role|disable|enable``: accounts of the results service."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from sonoseg.cli._common import console, fail, handle_errors
from sonoseg.cli._store_opts import DATA, DB, admin_session, open_store, print_table

users = typer.Typer(help="Accounts of `sonoseg serve` (roles: viewer, operator, admin).", no_args_is_help=True)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    if os.environ.get("SONOSEG_PASSWORD"):
        return os.environ["SONOSEG_PASSWORD"]
    if not sys.stdin.isatty():
        fail("no terminal to ask for the password: use --password-stdin or $SONOSEG_PASSWORD")
    return typer.prompt("password", hide_input=True, confirmation_prompt=True)


@users.command("add")
@handle_errors
def add(username: str = typer.Argument(..., help="User name."),
        role: str = typer.Option("viewer", help="viewer | operator | admin"),
        classes: Optional[str] = typer.Option(None, help="Restrict to classes, e.g. benign,malignant (default: all)."),
        password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from standard input."),
        db: Optional[str] = DB, data: Optional[Path] = DATA) -> None:
    """Create a user (the password is asked for, never given on the command line)."""
    from sonoseg.store import accounts, audit

    pw = _password(password_stdin)
    with admin_session(data, db) as (st, s):
        u = accounts.create_user(s, username, pw, role, classes.split(",") if classes else None)
        audit.record(s, "cli", "user:add", f"user:{u.id}", "local", detail=f"role={role}")
    console.print(f"user {username} ({role}) created")


@users.command("list")
@handle_errors
def list_(db: Optional[str] = DB, data: Optional[Path] = DATA) -> None:
    """List users, their roles, class restrictions and state."""
    from sqlalchemy import select

    from sonoseg.store.models import User

    st = open_store(data, db)
    with st.session() as s:
        rows = [(u.username, u.role, u.classes or "all", "disabled" if u.disabled else "active")
                for u in s.scalars(select(User).order_by(User.id))]
    st.dispose()
    print_table("users", ("user", "role", "classes", "state"), rows)


def _set_disabled(username: str, disabled: bool, db, data) -> None:
    from sonoseg.store import accounts, audit

    with admin_session(data, db) as (st, s):
        u = accounts.set_disabled(s, username, disabled)
        audit.record(s, "cli", "user:change", f"user:{u.id}", "local", detail=f"disabled={disabled}")
    console.print(f"user {username} {'disabled' if disabled else 'enabled'}")


@users.command("role")
@handle_errors
def role_(username: str = typer.Argument(..., help="User name."),
          role: str = typer.Argument(..., help="viewer | operator | admin"),
          db: Optional[str] = DB, data: Optional[Path] = DATA) -> None:
    """Change a user's role (the last enabled admin cannot be demoted)."""
    from sonoseg.store import accounts, audit

    with admin_session(data, db) as (st, s):
        u = accounts.change_user(s, username, role=role)
        audit.record(s, "cli", "user:change", f"user:{u.id}", "local", detail=f"role={role}")
    console.print(f"user {username} is now {role}")


@users.command("disable")
@handle_errors
def disable(username: str, db: Optional[str] = DB, data: Optional[Path] = DATA) -> None:
    """Disable a user: their tokens and keys stop working at once."""
    _set_disabled(username, True, db, data)


@users.command("enable")
@handle_errors
def enable(username: str, db: Optional[str] = DB, data: Optional[Path] = DATA) -> None:
    """Re-enable a disabled user."""
    _set_disabled(username, False, db, data)


def register(app: typer.Typer) -> None:
    app.add_typer(users, name="users")
