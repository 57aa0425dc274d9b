"""``sonoseg audit verify``: check the audit trail's HMAC chain and name its first broken link."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from sonoseg.cli._common import console, fail, handle_errors
from sonoseg.cli._store_opts import DATA, DB, open_store

audit = typer.Typer(help="The tamper-evident audit trail of `sonoseg serve`.", no_args_is_help=True)


@audit.command("verify")
@handle_errors
def verify(db: Optional[str] = DB, data: Optional[Path] = DATA) -> None:
    """Recompute every event's chained HMAC (needs the service's secret). Exit 0: intact (breaks the
    service was told to accept are listed); 1: the first broken link is named."""
    st = open_store(data, db)
    try:
        r = st.verify_audit()
    finally:
        st.dispose()
    for eid, _, why in r.breaks:
        if eid in r.acknowledged:
            console.print(f"accepted break at event {eid}: {why}")
    if not r.ok:
        fail(r.first_line(), 1)
    head = f"head: event {r.head[0]}, MAC {r.head[1][:16]}" if r.head else "no sealed events yet"
    older = f", {r.unsealed} older unsealed" if r.unsealed else ""
    console.print(f"audit trail intact: {r.events} event{'s' if r.events != 1 else ''}{older}; {head} (keep a copy of the head elsewhere: "
                  "removing the newest events leaves a shorter valid chain)")


def register(app: typer.Typer) -> None:
    app.add_typer(audit, name="audit")
