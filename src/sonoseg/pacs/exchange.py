"""echo / find / pull / push against a named server over either protocol: what the CLI verbs call.

``via``: ``dicomweb`` or ``dimse``; None picks DICOMweb when the server has a URL (one HTTP request per
study, no AE title set-up on the PACS), else DIMSE. Echo is a DIMSE C-ECHO, or for a DICOMweb-only
server a QIDO-RS request for one study (which checks the URL and the credentials)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

from sonoseg.errors import PacsError
from sonoseg.pacs.config import PacsServer
from sonoseg.pacs.query import Query
from sonoseg.pacs.sinks import protocol


def _module(srv: PacsServer, via: Optional[str]):
    via = protocol(srv, via, prefer="dicomweb")
    if via == "dicomweb":
        from sonoseg.pacs import dicomweb as mod
    else:
        from sonoseg.pacs import dimse as mod
    return via, mod


def echo(srv: PacsServer, via: Optional[str] = None) -> tuple[str, float]:
    """(protocol, milliseconds)."""
    import time

    via = protocol(srv, via)
    if via == "dimse":
        from sonoseg.pacs import dimse

        return via, dimse.echo(srv)
    from sonoseg.pacs import dicomweb

    t0 = time.perf_counter()
    dicomweb.search(srv, Query(), "study", limit=1)
    return via, (time.perf_counter() - t0) * 1000.0


def find(srv: PacsServer, query: Query, level: str = "study", via: Optional[str] = None,
         limit: Optional[int] = None) -> list[dict]:
    via, mod = _module(srv, via)
    return mod.search(srv, query, level, limit) if via == "dicomweb" else mod.find(srv, query, level, limit)


def pull(srv: PacsServer, query: Query, out_dir: Path, via: Optional[str] = None, limit: Optional[int] = None,
         on_instance: Optional[Callable[[Path], None]] = None) -> dict[str, list[Path]]:
    """Retrieve the studies (or the series, when ``query.series_uid`` is set) into ``out_dir``.
    Without ``query.study_uid`` the studies matching the other filters are found first (at most
    ``limit``). Returns {Study Instance UID: files}."""
    via, mod = _module(srv, via)
    if query.study_uid:
        studies = [query.study_uid]
    else:
        if not any(query.filters("study").values()):
            raise PacsError("pull: give a study UID or at least one filter (patient ID, date, accession ...)")
        studies = [r["StudyInstanceUID"] for r in find(srv, query, "study", via, limit) if r["StudyInstanceUID"]]
    return {uid: mod.retrieve(srv, uid, Path(out_dir), query.series_uid, on_instance) for uid in studies}


def push(srv: PacsServer, files: Sequence[Path], via: Optional[str] = None) -> list[str]:
    """Store DICOM files (SEGs, or anything else) on the server; returns the SOP Instance UIDs stored."""
    via, mod = _module(srv, via)
    return mod.store(srv, list(files))
