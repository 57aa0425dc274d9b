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
from sonoseg.pacs.config import PacsServer, need
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
    if not srv.has_dimse:
        raise PacsError(f"server {srv.name}: no host/port configured for DIMSE")
    assoc = ae.associate(srv.host, srv.port, ae_title=srv.ae_title, **kw)
    if not assoc.is_established:
        why = ("rejected" if assoc.is_rejected else "aborted") + " the association (check the AE titles)" \
            if assoc.is_rejected or assoc.is_aborted else f"cannot be reached at {srv.host}:{srv.port}"
        raise PacsError(f"server {srv.name}: {what}: {why}")
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


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


def _move(srv, study_uid, out_dir, series_uid, on_instance) -> list[Path]:
    from pynetdicom import evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as MOVE

    receiver = _ae(srv, srv.move_destination)
    receiver.supported_contexts = storage_scp_contexts()
    received: list[Path] = []
    handlers = [(evt.EVT_C_STORE, _store_handler(out_dir, received, on_instance))]
    try:
        scp = receiver.start_server(("", srv.move_port), block=False, evt_handlers=handlers)
    except OSError as exc:
        raise PacsError(f"server {srv.name}: cannot listen on move_port {srv.move_port} ({exc.strerror})") from None
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
    Raises after trying all when any was refused."""
    import pydicom

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
    ok, failed = [], 0
    with _association(srv, ae, "C-STORE") as assoc:
        for p, ds in heads:
            try:
                code = _status(assoc.send_c_store(p))
            except ValueError:  # the peer did not accept the file's own transfer syntax
                full = pydicom.dcmread(p)
                full.decompress()
                code = _status(assoc.send_c_store(full))
            if code in (SUCCESS, 0xB000, 0xB007, 0xB006):  # success or warning (coerced / elements discarded)
                ok.append(str(ds.SOPInstanceUID))
            else:
                failed += 1
    if failed:
        raise PacsError(f"server {srv.name}: C-STORE refused {failed} of {len(heads)} instance(s)")
    return ok
