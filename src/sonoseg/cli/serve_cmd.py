"""``sonoseg serve``: the authenticated results API, its worker and the web viewer (loopback by default)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from sonoseg.cli._common import console, handle_errors

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(app: typer.Typer) -> None:
    @app.command("serve")
    @handle_errors
    def serve_cmd(
        host: str = typer.Option("127.0.0.1", help="Bind address. Keep loopback; put a TLS reverse proxy in front."),
        port: int = typer.Option(8000, help="TCP port."),
        db: Optional[str] = typer.Option(None, "--db", help="Database URL (default: SQLite in --data; postgresql://...)."),
        data: Optional[Path] = typer.Option(None, "--data", help="Data folder (default: $SONOSEG_HOME or ~/.local/share/sonoseg)."),
        docs: bool = typer.Option(False, "--docs/--no-docs", help="Serve the OpenAPI schema (to signed-in users only)."),
        worker: bool = typer.Option(True, "--worker/--no-worker", help="Run the prediction worker in this process."),
        model: Optional[Path] = typer.Option(None, "--model", "-m", help="Model file, or fast | accurate | v3 (default: accurate)."),
        accept_broken_audit: bool = typer.Option(False, "--accept-broken-audit",
                                                 help="Start although `sonoseg audit verify` finds a broken chain "
                                                      "(the break is recorded in the trail)."),
        keep_identifiers: bool = typer.Option(False, "--keep-identifiers", help="Also keep each SEG with the source's "
                                              "identifiers (e.g. to push back to the site's PACS): admins only, "
                                              "audited. Default: de-identified only."),
    ) -> None:
        """Serve the API under /api/v1 and the viewer under /viewer; create users with `sonoseg users add`."""
        import uvicorn

        from sonoseg.serve.app import create_app
        from sonoseg.serve.settings import Settings

        from sonoseg.serve.startup import preflight

        settings = Settings.from_env(data, db, docs=docs, worker=worker, accept_broken_audit=accept_broken_audit)
        if model is not None:
            settings.model = model
        preflight(settings.data_dir, settings.db_url, accept_broken_audit)  # one line, not a traceback
        settings.keep_identifiers = settings.keep_identifiers or keep_identifiers
        if host not in LOOPBACK:
            console.print(f"[yellow]warning:[/] binding {host}: serve plain HTTP only behind a TLS reverse proxy")
        console.print(f"sonoseg serve: http://{host}:{port}/viewer/  (data: {settings.data_dir})")
        uvicorn.run(create_app(settings), host=host, port=port, log_level="info", access_log=False,
                    proxy_headers=False)
