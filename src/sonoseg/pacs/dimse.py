"""DIMSE with pynetdicom: C-ECHO, C-FIND (study / series), C-GET or C-MOVE retrieve, C-STORE send.

Storage contexts offer every transfer syntax pynetdicom knows, so a PACS sends what it stores (JPEG 2000,
RLE ...) instead of decompressing; received instances are written as the bytes that came.
pynetdicom's debug log dumps whole datasets (names, IDs): its logger is kept at WARNING here.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

from pydicom.dataset import Dataset

from sonoseg.errors import InputError, PacsError
from sonoseg.pacs.config import RETRY_ATTEMPTS, RETRY_FIRST_WAIT_S, PacsServer, need
from sonoseg.pacs.files import read_header, save_encoded
from sonoseg.pacs.query import Query, row

# Ultrasound and what travels with it: single/multi-frame US (current and retired), enhanced US volume,
# secondary captures; SEG.
IMAGE_STORAGE = (
    "1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.5.1.4.1.1.3.1", "1.2.840.10008.5.1.4.1.1.6",
    "1.2.840.10008.5.1.4.1.1.3", "1.2.840.10008.5.1.4.1.1.6.2", "1.2.840.10008.5.1.4.1.1.7",
    "1.2.840.10008.5.1.4.1.1.7.2", "1.2.840.10008.5.1.4.1.1.7.4",
)
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
NATIVE = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")  # explicit / implicit VR little endian
# What ultrasound is stored in: JPEG baseline / extended / lossless, JPEG-LS, JPEG 2000, RLE, deflate,
# big endian. C-GET needs one presentation context per (SOP class, transfer syntax): the acceptor picks
# a single transfer syntax per context, and a server that cannot transcode (Orthanc without a JPEG 2000
# codec) then fails the sub-operation. 8 x 13 + 2 + 1 = 107 contexts, under the limit of 128.
STORED_SYNTAXES = NATIVE + (
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2",
)
SUCCESS, PENDING = 0x0000, (0xFF00, 0xFF01)
log = logging.getLogger("sonoseg.pacs.dimse")


def log_rejected(logger: logging.Logger, our_title: str):
    """An EVT_REJECTED handler: one line per refused association, with who asked and from where."""
    def handle(event) -> None:
        rq = event.assoc.requestor
        called = getattr(getattr(rq, "primitive", None), "called_ae_title", "?")
        logger.warning("association rejected: from %s:%s, calling AE title %r, called %r (we are %r)",
                       rq.address, rq.port, str(rq.ae_title).strip(), str(called).strip(), our_title)

    return handle


def quiet_pynetdicom() -> None:
    need("pynetdicom")
    log = logging.getLogger("pynetdicom")
    if log.level == logging.NOTSET or log.level < logging.WARNING:
        log.setLevel(logging.WARNING)


def _ae(srv: PacsServer, ae_title: Optional[str] = None):
    quiet_pynetdicom()
    from pynetdicom import AE

    ae = AE(ae_title=ae_title or srv.calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = srv.timeout_s
    return ae


@contextmanager
def _association(srv: PacsServer, ae, what: str, **kw) -> Iterator:
    """An established association, or a one-line PacsError saying why not. A connection that cannot
    be made (refused, timed out) is tried again with the same policy as DICOMweb: 3 tries, 1 and 2 s
    apart; a rejection (wrong AE title) or a certificate error is not (it would fail the same way)."""
    if not srv.has_dimse:
        raise PacsError(f"server {srv.name}: no host/port configured for DIMSE")
    tls = (srv.tls.client_context(), srv.host) if srv.tls is not None else None
    for attempt in range(1, RETRY_ATTEMPTS + 1):
        assoc = ae.associate(srv.host, srv.port, ae_title=srv.ae_title, tls_args=tls, **kw)
        if assoc.is_established:
            break
        if assoc.is_rejected:
            why, again = (f"rejected the association (check the AE titles: we are {ae.ae_title}, the server "
                          f"{srv.ae_title})"), False
        else:
            why, again = diagnose(srv)
        if not again or attempt == RETRY_ATTEMPTS:
            tries = f" ({attempt} tries)" if attempt > 1 else ""
            raise PacsError(f"server {srv.name}: {what}: {why}{tries}")
        time.sleep(RETRY_FIRST_WAIT_S * 2 ** (attempt - 1))
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def diagnose(srv: PacsServer) -> tuple[str, bool]:
    """Why an association could not be made, found by connecting again ourselves (pynetdicom only
    logs the reason): (words, worth trying again)."""
    import socket
    import ssl

    from sonoseg.pacs.tls import describe

    where = f"{srv.host}:{srv.port}"
    try:
        sock = socket.create_connection((srv.host, srv.port), timeout=min(srv.timeout_s, 10.0))
    except ConnectionRefusedError:
        return f"connection refused at {where}", True
    except socket.gaierror:
        return f"unknown host {srv.host}", False
    except (socket.timeout, TimeoutError):
        return f"no answer from {where}", True
    except OSError as exc:
        return f"cannot connect to {where} ({exc.strerror or type(exc).__name__})", True
    with sock:
        if srv.tls is not None:
            try:
                srv.tls.client_context().wrap_socket(sock, server_hostname=srv.host).close()
            except (ssl.SSLError, OSError) as exc:
                return f"TLS with {where} failed: {describe(exc)} (see tls: in the server list)", False
    return "aborted the association (check the AE titles" + (")" if srv.tls is not None else
                                                             ", and whether the server expects TLS)"), False


def _status(st: Dataset | None) -> int:
    return int(getattr(st, "Status", -1)) if st is not None and "Status" in st else -1


def echo(srv: PacsServer) -> float:
    """C-ECHO; returns the round trip in milliseconds (association included)."""
    from pynetdicom.sop_class import Verification

    ae = _ae(srv)
    ae.add_requested_context(Verification)
    t0 = time.perf_counter()
    with _association(srv, ae, "C-ECHO") as assoc:
        st = _status(assoc.send_c_echo())
    if st != SUCCESS:
        raise PacsError(f"server {srv.name}: C-ECHO failed (status 0x{max(st, 0):04X})")
    return (time.perf_counter() - t0) * 1000.0


def find(srv: PacsServer, query: Query, level: str = "study", limit: Optional[int] = None) -> list[dict]:
    """C-FIND in the Study Root model at study or series level -> rows."""
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND

    ae = _ae(srv)
    ae.add_requested_context(FIND)
    ident = query.identifier(level)
    rows = []
    with _association(srv, ae, "C-FIND") as assoc:
        for st, found in assoc.send_c_find(ident, FIND):
            code = _status(st)
            if code in PENDING and found is not None:  # read to the end: leaving early would need a C-CANCEL
                rows.append(row(found, level))
            elif code != SUCCESS:
                raise PacsError(f"server {srv.name}: C-FIND failed (status 0x{max(code, 0):04X})")
    return rows[:limit] if limit else rows


def _retrieve_identifier(study_uid: str, series_uid: Optional[str]) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES" if series_uid else "STUDY"
    ds.StudyInstanceUID = study_uid
    if series_uid:
        ds.SeriesInstanceUID = series_uid
    return ds


def _store_handler(out_dir: Path, received: list, on_instance: Optional[Callable[[Path], None]]):
    def handle(event) -> int:
        try:
            ds = event.dataset
            p = save_encoded(event.encoded_dataset(include_meta=True), str(ds.StudyInstanceUID),
                             str(event.request.AffectedSOPInstanceUID), out_dir)
        except OSError:
            return 0xA700  # out of resources (disk full ...): the sender keeps the instance and may retry
        except (InputError, AttributeError, ValueError):
            return 0xC210  # cannot understand (no study / instance UID)
        received.append(p)
        if on_instance is not None:
            on_instance(p)
        return SUCCESS

    return handle


def _check_retrieve(srv: PacsServer, what: str, responses) -> None:
    final = None
    for st, _ in responses:
        code = _status(st)
        if code not in PENDING:
            final = (code, st)
    if final is None:
        raise PacsError(f"server {srv.name}: {what}: no final status")
    code, st = final
    failed = int(getattr(st, "NumberOfFailedSuboperations", 0) or 0)
    if code != SUCCESS or failed:
        raise PacsError(f"server {srv.name}: {what} ended with status 0x{max(code, 0):04X}"
                        + (f", {failed} instance(s) not sent" if failed else ""))


def retrieve(srv: PacsServer, study_uid: str, out_dir: Path, series_uid: Optional[str] = None,
             on_instance: Optional[Callable[[Path], None]] = None) -> list[Path]:
    """C-GET (default) or C-MOVE (``retrieve: move`` in the server list) of a study or one series."""
    return (_move if srv.retrieve == "move" else _get)(srv, study_uid, Path(out_dir), series_uid, on_instance)


def _get(srv, study_uid, out_dir, series_uid, on_instance) -> list[Path]:
    from pynetdicom import build_role, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as GET

    ae = _ae(srv)
    ae.add_requested_context(GET)
    for uid in IMAGE_STORAGE:
        for ts in STORED_SYNTAXES:
            ae.add_requested_context(uid, ts)
    for ts in NATIVE:
        ae.add_requested_context(SEG_STORAGE, ts)
    roles = [build_role(uid, scp_role=True) for uid in IMAGE_STORAGE + (SEG_STORAGE,)]
    received: list[Path] = []
    handlers = [(evt.EVT_C_STORE, _store_handler(out_dir, received, on_instance))]
    with _association(srv, ae, "C-GET", ext_neg=roles, evt_handlers=handlers) as assoc:
        _check_retrieve(srv, "C-GET", assoc.send_c_get(_retrieve_identifier(study_uid, series_uid), GET))
    return received


def storage_scp_contexts():
    """Every storage SOP class pynetdicom knows, each with every transfer syntax (an SCP may accept more
    than 128 contexts)."""
    from pynetdicom import ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, build_context

    return [build_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES) for cx in AllStoragePresentationContexts]


def move_receiver(srv: PacsServer, handlers: list):
    """The temporary C-STORE SCP of a C-MOVE, started: it takes associations only from the server we asked
    (calling AE title = its ae_title), only under the title we gave it (move_destination), only on the
    configured interface (move_host, loopback by default); a refused one is logged with its address."""
    from pynetdicom import evt

    receiver = _ae(srv, srv.move_destination)
    receiver.supported_contexts = storage_scp_contexts()
    receiver.require_calling_aet, receiver.require_called_aet = [srv.ae_title], True
    tls = srv.tls.server_context() if srv.tls is not None and srv.tls.cert_file else None
    try:
        return receiver.start_server((srv.move_host, srv.move_port), block=False, ssl_context=tls,
                                     evt_handlers=handlers + [(evt.EVT_REJECTED, log_rejected(log, srv.move_destination))])
    except OSError as exc:
        raise PacsError(f"server {srv.name}: cannot listen on {srv.move_host}:{srv.move_port} "
                        f"({exc.strerror})") from None


def _move(srv, study_uid, out_dir, series_uid, on_instance) -> list[Path]:
    from pynetdicom import evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as MOVE

    received: list[Path] = []
    scp = move_receiver(srv, [(evt.EVT_C_STORE, _store_handler(out_dir, received, on_instance))])
    try:
        ae = _ae(srv)
        ae.add_requested_context(MOVE)
        with _association(srv, ae, "C-MOVE") as assoc:
            _check_retrieve(srv, "C-MOVE", assoc.send_c_move(_retrieve_identifier(study_uid, series_uid),
                                                             srv.move_destination, MOVE))
    finally:
        scp.shutdown()
    return received


def store(srv: PacsServer, paths: Sequence[Path]) -> list[str]:
    """C-STORE of DICOM files in one association; returns the SOP Instance UIDs stored. Each file goes
    in its own transfer syntax when the peer accepts it, else decompressed to explicit little endian.
    Instances refused for lack of resources are tried again (3 tries); raises after trying all when
    any was refused."""
    heads = [(Path(p), read_header(p)) for p in paths]
    if not heads:
        return []
    # one context per (SOP class, transfer syntax): the acceptor picks one syntax per context
    contexts = {(str(ds.SOPClassUID), ts) for _, ds in heads
                for ts in (str(ds.file_meta.TransferSyntaxUID), *NATIVE)}
    if len(contexts) > 128:
        raise PacsError(f"server {srv.name}: too many SOP classes / transfer syntaxes for one C-STORE batch")
    ae = _ae(srv)
    for uid, ts in sorted(contexts):
        ae.add_requested_context(uid, ts)
    ok, failed, todo = [], 0, heads
    for attempt in range(1, RETRY_ATTEMPTS + 1):
        busy = []  # refused with "out of resources" (0xA7xx): the peer asks us to try again later
        with _association(srv, ae, "C-STORE") as assoc:
            for p, ds in todo:
                code = _send(assoc, p)
                if code in (SUCCESS, 0xB000, 0xB007, 0xB006):  # success or warning (coerced / elements discarded)
                    ok.append(str(ds.SOPInstanceUID))
                elif 0xA700 <= code <= 0xA7FF:
                    busy.append((p, ds))
                else:
                    failed += 1
        if not busy or attempt == RETRY_ATTEMPTS:
            failed += len(busy)
            break
        todo = busy
        time.sleep(RETRY_FIRST_WAIT_S * 2 ** (attempt - 1))
    if failed:
        raise PacsError(f"server {srv.name}: C-STORE refused {failed} of {len(heads)} instance(s)")
    return ok


def _send(assoc, path: Path) -> int:
    """C-STORE one file in its own transfer syntax, or decompressed when the peer did not accept that."""
    import pydicom

    try:
        return _status(assoc.send_c_store(path))
    except ValueError:  # the peer did not accept the file's own transfer syntax
        full = pydicom.dcmread(path)
        full.decompress()
        return _status(assoc.send_c_store(full))
