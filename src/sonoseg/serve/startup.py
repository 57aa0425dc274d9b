"""Checks before the service answers anything: the database opens and migrates, and the audit chain
is intact. ``preflight`` runs them before uvicorn starts, so a wrong URL or password, or a broken
chain, ends ``sonoseg serve`` with one line naming the cause instead of a start-up traceback."""

from __future__ import annotations

import logging

from sonoseg.errors import SonosegError
from sonoseg.store import Store
from sonoseg.store.audit import AuditChainBroken, acknowledge

log = logging.getLogger("sonoseg.serve")


class DatabaseUnavailable(SonosegError):
    pass


def check_audit(st: Store, accept_broken: bool, record: bool = True) -> None:
    """Refuse a broken audit chain unless told to accept it; an accepted break is recorded (sealed),
    so the next start passes while the break stays listed by ``sonoseg audit verify``."""
    report = st.verify_audit()
    if report.ok:
        return
    if not accept_broken:
        raise AuditChainBroken(f"{report.first_line()}; see `sonoseg audit verify`, or start with "
                               "--accept-broken-audit to record the break and run anyway")
    log.warning("starting despite a broken audit trail: %s", report.first_line())
    if record:
        with st.session() as s, s.begin():
            acknowledge(s, report)


def shown_url(url: str | None) -> str:
    """The database URL without its password (for messages)."""
    if not url:
        return "the SQLite database in the data folder"
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL: do not echo it, it may hold a password
        return "the database URL given"


def _why(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = " ".join(line.strip() for line in str(orig).splitlines() if line.strip())
    return text[:300] or type(orig).__name__


def preflight(data_dir, db_url, accept_broken_audit: bool) -> None:
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    try:
        st = Store(data_dir, db_url)
    except (ArgumentError, NoSuchModuleError, ValueError, ImportError) as exc:
        raise DatabaseUnavailable(f"invalid database URL ({shown_url(db_url)}): {_why(exc)}") from None
    try:
        st.migrate()
        check_audit(st, accept_broken_audit, record=False)
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(f"cannot open {shown_url(db_url)}: {_why(exc)}") from None
    finally:
        st.dispose()


def retry_refusal(st: Store, job, limits):
    """Why a job the last server left running must not run again, or None. A server that died
    mid-job may have been killed for memory: a job estimated at more than half the job budget is
    failed instead of re-queued into the same death (smaller ones are retried, up to MAX_ATTEMPTS)."""
    from sonoseg.serve.guard import check
    from sonoseg.serve.uploads import UploadRejected

    src = st.find_spooled(job.id)
    if src is None:
        return None  # the worker reports the missing upload
    try:
        need = check(src, job.format, limits).job_bytes()
    except UploadRejected as exc:
        return str(exc)
    if need > limits.job_bytes // 2:
        return (f"the server stopped while this job ran and it needs about {need >> 20} MB: "
                "not retried (it may have exhausted the server's memory)")
    return None
