"""Options shared by the admin verbs that open the store directly (users, keys)."""

from __future__ import annotations

from pathlib import Path
from contextlib import contextmanager
from typing import Optional

import typer

DB = typer.Option(None, "--db", help="Database URL (default: SQLite in --data).")
DATA = typer.Option(None, "--data", help="Data folder (default: $SONOSEG_HOME or ~/.local/share/sonoseg).")


def open_store(data: Optional[Path], db: Optional[str]):
    from sonoseg.serve.settings import Settings
    from sonoseg.store import Store

    s = Settings.from_env(data, db)
    st = Store(s.data_dir, s.db_url)
    st.migrate()
    return st


@contextmanager
def admin_session(data: Optional[Path], db: Optional[str]):
    """(store, session) in one transaction; account errors become a one-line error and exit 2."""
    from sonoseg.cli._common import fail
    from sonoseg.store.accounts import AccountError

    st = open_store(data, db)
    try:
        with st.session() as s, s.begin():
            yield st, s
    except AccountError as exc:
        fail(str(exc), 2)
    finally:
        st.dispose()


def print_table(title: str, columns: tuple[str, ...], rows) -> None:
    from rich.table import Table

    from sonoseg.cli._common import console

    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*r)
    console.print(table)
