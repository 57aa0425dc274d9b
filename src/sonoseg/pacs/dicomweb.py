"""DICOMweb with dicomweb-client: QIDO-RS search, WADO-RS retrieve, STOW-RS store.

Retrieval asks for the stored transfer syntax (``application/dicom; transfer-syntax=*``), so the
pixels sonoseg segments are the ones the modality sent, not a server-side transcode."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Optional, Sequence

import pydicom
from pydicom.dataset import Dataset

from sonoseg.errors import PacsError
from sonoseg.pacs.config import RETRY_ATTEMPTS, RETRY_FIRST_WAIT_S, PacsServer, need
from sonoseg.pacs.files import read_header, save_instance
from sonoseg.pacs.query import LEVELS, Query, row

ANY_SYNTAX = (("application/dicom", "*"),)


def client(srv: PacsServer):
    need("dicomweb_client")
    from dicomweb_client.api import DICOMwebClient

    if not srv.has_dicomweb:
        raise PacsError(f"server {srv.name}: no dicomweb_url configured")
    session = _session(srv.tls is not None)
    if srv.username:
        session.auth = (srv.username, srv.password())
    token = srv.token()
    if token is not None:
        session.headers["Authorization"] = f"Bearer {token}"
    if srv.tls is not None:
        session.verify, session.cert = srv.tls.requests_verify(), srv.tls.requests_cert()
    c = DICOMwebClient(srv.dicomweb_url, session=session, timeout=srv.timeout_s)
    # dicomweb-client retries every failed request (connection refused included) 5 times, 2-16 s apart:
    # half a minute before "cannot reach". Three tries 1 and 2 s apart still ride out a busy server (429,
    # 503); the listener re-sends later on its own (sonoseg.pacs.outbox) instead of blocking its worker.
    # DIMSE uses the same policy (sonoseg.pacs.dimse).
    c.set_http_retry_params(retry=True, max_attempts=RETRY_ATTEMPTS,
                            wait_exponential_multiplier=int(RETRY_FIRST_WAIT_S * 500))
    return c


def _session(own_tls: bool):
    """A requests session; with a ``tls:`` block its CA file and client certificate are the ones used.
    (requests lets $REQUESTS_CA_BUNDLE / $CURL_CA_BUNDLE override a session's ``verify``: a server list
    that names its CA must not be overruled by the environment.)"""
    import requests

    class PinnedSession(requests.Session):
        def merge_environment_settings(self, url, proxies, stream, verify, cert):
            merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
            merged["verify"], merged["cert"] = self.verify, self.cert
            return merged

    return PinnedSession() if own_tls else requests.Session()


@contextmanager
def _errors(srv: PacsServer, what: str):
    import requests

    try:
        yield
    except requests.HTTPError as exc:
        code = getattr(exc.response, "status_code", "?")
        words = {401: "authentication failed (check username / password_env, or token_env / token_file)",
                 403: "access denied", 404: "not found"}.get(code, "request failed")
        raise PacsError(f"server {srv.name}: DICOMweb {what}: HTTP {code}, {words}") from None
    except requests.exceptions.SSLError as exc:  # before ConnectionError, its parent
        from sonoseg.pacs.tls import describe

        raise PacsError(f"server {srv.name}: TLS with {srv.dicomweb_url} failed: {describe(exc)} "
                        "(see tls: ca_file / cert_file in the server list)") from None
    except requests.ConnectionError as exc:
        raise PacsError(f"server {srv.name}: cannot reach {srv.dicomweb_url}{_refused(exc)}") from None
    except requests.Timeout:
        raise PacsError(f"server {srv.name}: DICOMweb {what} timed out after {srv.timeout_s:g} s") from None


def _refused(exc: BaseException) -> str:
    """" (connection refused)" when that is why: the most common cause, worth naming."""
    from sonoseg.pacs.tls import causes

    refused = any(isinstance(e, ConnectionRefusedError) or "Connection refused" in str(e) for e in causes(exc))
    return " (connection refused)" if refused else ""


def search(srv: PacsServer, query: Query, level: str = "study", limit: Optional[int] = None) -> list[dict]:
    """QIDO-RS at study or series level -> rows (see :func:`sonoseg.pacs.query.row`)."""
    c = client(srv)
    filters = query.filters(level)
    fields = list(LEVELS[level])
    with _errors(srv, "search"):
        if level == "study":
            items = c.search_for_studies(search_filters=filters, fields=fields, limit=limit)
        else:
            study = filters.pop("StudyInstanceUID", None)
            items = c.search_for_series(study_instance_uid=study, search_filters=filters, fields=fields,
                                        limit=limit)
    rows = [row(Dataset.from_json(it), level) for it in items]
    if level == "series" and query.study_uid:  # some servers omit the study UID in series answers
        for r in rows:
            r["StudyInstanceUID"] = r["StudyInstanceUID"] or query.study_uid
    return rows


def retrieve(srv: PacsServer, study_uid: str, out_dir: Path, series_uid: Optional[str] = None,
             on_instance: Optional[Callable[[Path], None]] = None) -> list[Path]:
    """WADO-RS of a study (or one series) into ``out_dir`` (see :mod:`sonoseg.pacs.files`), streamed."""
    c = client(srv)
    out = []
    with _errors(srv, "retrieve"):
        it = (c.iter_series(study_uid, series_uid, media_types=ANY_SYNTAX) if series_uid
              else c.iter_study(study_uid, media_types=ANY_SYNTAX))
        for ds in it:
            p = save_instance(ds, Path(out_dir))
            out.append(p)
            if on_instance is not None:
                on_instance(p)
    return out


def store(srv: PacsServer, paths: Sequence[Path]) -> list[str]:
    """STOW-RS of DICOM files; returns the SOP Instance UIDs the server accepted. Raises when any was
    refused (the reply's FailedSOPSequence), after sending them all."""
    c = client(srv)
    by_study: dict[str, list[Path]] = {}
    for p in paths:
        by_study.setdefault(str(read_header(p, ["StudyInstanceUID"]).StudyInstanceUID), []).append(Path(p))
    ok, failed = [], 0
    for study, group in by_study.items():  # one request per study; one study's files in memory at a time
        with _errors(srv, "store"):
            reply = c.store_instances([pydicom.dcmread(p) for p in group], study_instance_uid=study)
        ok += [str(i.ReferencedSOPInstanceUID) for i in reply.get("ReferencedSOPSequence", []) or []]
        failed += len(reply.get("FailedSOPSequence", []) or [])
    if failed:
        raise PacsError(f"server {srv.name}: DICOMweb store refused {failed} of {len(paths)} instance(s)")
    return ok
