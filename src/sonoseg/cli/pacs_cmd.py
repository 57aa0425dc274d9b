"""``sonoseg pacs echo|find|pull|push``: exchange with a PACS named in the server list (sonoseg.pacs.config)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from sonoseg.cli._common import console, handle_errors

pacs = typer.Typer(help="Exchange with a PACS: echo, find, pull studies, push SEGs (servers: see README, PACS).",
                   no_args_is_help=True)

SERVER = typer.Argument(..., help="Server name from the server list.")
SERVERS = typer.Option(None, "--servers", help="Server list YAML (default: $SONOSEG_PACS_CONFIG or "
                                               "~/.config/sonoseg/pacs.yaml).")
VIA = typer.Option(None, "--via", help="dicomweb | dimse (default: DICOMweb when the server has a URL; "
                                       "echo: DIMSE when it has a port).")


def _query(patient_id, date, modality, accession, study, series=None):
    from sonoseg.pacs.query import Query

    return Query(patient_id=patient_id, study_date=date, modality=modality, accession=accession, study_uid=study,
                 series_uid=series)


PATIENT = typer.Option(None, "--patient-id", help="Patient ID (the pseudonym, in a research PACS).")
DATE = typer.Option(None, "--date", help="Study date YYYYMMDD or YYYY-MM-DD, or a range FROM-TO of those.")
MODALITY = typer.Option(None, "--modality", help="e.g. US.")
ACCESSION = typer.Option(None, "--accession", help="Accession number.")
STUDY = typer.Option(None, "--study", help="Study Instance UID.")


@pacs.command("echo")
@handle_errors
def echo_cmd(name: str = SERVER, servers: Optional[Path] = SERVERS, via: Optional[str] = VIA) -> None:
    """Check that the server answers (C-ECHO, or a one-study QIDO-RS search for a DICOMweb-only server)."""
    from sonoseg.pacs import exchange, server

    proto, ms = exchange.echo(server(name, servers), via)
    console.print(f"{name}: {proto} echo ok ({ms:.0f} ms)")


@pacs.command("find")
@handle_errors
def find_cmd(name: str = SERVER, patient_id: Optional[str] = PATIENT, date: Optional[str] = DATE,
             modality: Optional[str] = MODALITY, accession: Optional[str] = ACCESSION, study: Optional[str] = STUDY,
             level: str = typer.Option("study", "--level", help="study | series"),
             limit: Optional[int] = typer.Option(None, "--limit", min=1, help="At most this many answers."),
             as_json: bool = typer.Option(False, "--json", help="One JSON list on stdout instead of a table."),
             servers: Optional[Path] = SERVERS, via: Optional[str] = VIA) -> None:
    """Search studies or series (QIDO-RS or C-FIND). Answers show UIDs, dates and counts, not names."""
    import json

    from sonoseg.pacs import exchange, server
    from sonoseg.pacs.query import LEVELS

    rows = exchange.find(server(name, servers), _query(patient_id, date, modality, accession, study), level, via,
                         limit)
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    from rich.table import Table

    table = Table(title=f"{name}: {len(rows)} {level}{'' if len(rows) == 1 else ' answers'}")
    cols = [c for c in LEVELS[level] if c != "StudyTime"]
    for c in cols:
        table.add_column(c.replace("NumberOf", "#").replace("Related", " "))
    for r in rows:
        table.add_row(*[r.get(c, "") for c in cols])
    console.print(table)


@pacs.command("pull")
@handle_errors
def pull_cmd(name: str = SERVER, out: Path = typer.Option(Path("pacs-studies"), "--out", "-o", help="Output folder."),
             study: Optional[str] = STUDY,
             series: Optional[str] = typer.Option(None, "--series", help="Series Instance UID (with --study)."),
             patient_id: Optional[str] = PATIENT, date: Optional[str] = DATE, modality: Optional[str] = MODALITY,
             accession: Optional[str] = ACCESSION,
             limit: int = typer.Option(10, "--limit", min=1, help="At most this many studies when searching."),
             servers: Optional[Path] = SERVERS, via: Optional[str] = VIA) -> None:
    """Retrieve studies (WADO-RS, C-GET or C-MOVE) into OUT/<study tag>/; then `sonoseg predict OUT`."""
    from sonoseg.pacs import exchange, server
    from sonoseg.pacs.query import study_tag

    got = exchange.pull(server(name, servers), _query(patient_id, date, modality, accession, study, series), out,
                        via, limit)
    for uid, files in got.items():
        console.print(f"{study_tag(uid)}: {len(files)} instance(s) in {Path(out) / study_tag(uid)}")
    console.print(f"{len(got)} study(ies), {sum(map(len, got.values()))} instance(s) pulled from {name}")


@pacs.command("push")
@handle_errors
def push_cmd(name: str = SERVER,
             files: List[Path] = typer.Argument(..., help="DICOM files or folders (e.g. predict's *.seg.dcm)."),
             segs_only: bool = typer.Option(True, "--segs-only/--all", help="From folders, send only DICOM SEGs (and "
                                                                            "sonoseg's overlay captures)."),
             servers: Optional[Path] = SERVERS, via: Optional[str] = VIA) -> None:
    """Store files on the server (STOW-RS or C-STORE)."""
    from sonoseg.pacs import exchange, server
    from sonoseg.pacs.files import dicom_files, is_result

    paths = [p for p in dicom_files(files) if not segs_only or Path(p) in set(files) or is_result(p)]
    if not paths:
        from sonoseg.cli._common import fail

        fail("nothing to send: no DICOM SEG in the given files or folders (use --all for every DICOM file)")
    stored = exchange.push(server(name, servers), paths, via)
    console.print(f"{len(stored)} instance(s) stored on {name}")


def register(app: typer.Typer) -> None:
    app.add_typer(pacs, name="pacs")
