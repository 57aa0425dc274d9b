"""Options shared by the admin verbs that open the store directly (users, keys)."""

from __future__ import annotations

from pathlib import Path
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
