"""``sonoseg listen``: a C-STORE SCP that segments each study once it is complete and sends the SEGs on.

* A study is complete when no instance of it has arrived for ``quiet_s`` seconds (DIMSE has no
  "end of study" message; a quiet period is what PACS routers use too).
* No instance is lost: each one is on disk (``WORK/incoming/<study tag>/``) before the sender is told
  "success". Instances waiting to be segmented are bounded (``max_pending``): past it, a C-STORE waits
  up to ``wait_s`` for room and then answers "out of resources" (0xA700), so the sender keeps it and
  retries, rather than the listener growing without limit. Instances left on disk by a stopped
  listener are picked up at the next start.
* One worker thread segments one study at a time (the predictor's threads do the parallel work), writes
  predict's outputs to ``WORK/results/<study tag>/<time>/`` and hands the SEGs to the sinks
  (:mod:`sonoseg.pacs.sinks`).
* Several destinations, one failing: each destination's success is recorded as soon as it happens
  (:mod:`sonoseg.pacs.outbox`); the failed ones are retried with the same SEG files after ``retry_s``
  seconds (doubling up to ``retry_max_s``), also after a restart, and the study is never segmented
  again for them, so a destination that already has the SEGs gets no second copy.
* Access: both AE titles are checked (the called one must be ours; the calling one, with ``allowed_aets``,
  one of those); every refused association is logged with the peer's address. ``tls`` makes it a DICOM
  TLS listener (with a CA file: senders must show a certificate it signed).
* Each instance is checked before it is acknowledged (:mod:`sonoseg.pacs.received`): one that cannot be
  stored or read gets a failure status (0xA700 out of resources, 0xA900 / 0xC2xx cannot understand),
  and every instance gets one log line with the status it was answered.
* A re-sent image already segmented with the same model and settings is not segmented or sent again
  (:mod:`sonoseg.pacs.ledger`); a changed image or model gives a new SEG naming the one it replaces.
* Housekeeping: a study's results folder is removed once delivered everywhere (``keep_results_s`` later,
  or never with ``inf``; kept when there is no destination, being then the only output); at start,
  folders left by a segmentation that was killed are removed (their instances are segmented again).
* Logs name studies by a hash of their UID and never print header values.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from sonoseg.errors import SonosegError, reason
from sonoseg.infer.sop_class import describe_skipped
from sonoseg.pacs.files import save_encoded
from sonoseg.pacs.ledger import Ledger
from sonoseg.pacs.outbox import Delivery, Outbox
from sonoseg.pacs.query import study_tag
from sonoseg.pacs.received import CANNOT_UNDERSTAND, OUT_OF_RESOURCES, check_instance
from sonoseg.pacs.tls import TlsSettings

log = logging.getLogger("sonoseg.pacs.listener")
DELIVERED = ".delivered"  # marker in a results folder: every destination has it (content: the time)


@dataclass
class ListenerSettings:
    work_dir: Path
    ae_title: str = "SONOSEG"
    host: str = "127.0.0.1"
    port: int = 11112
    allowed_aets: Sequence[str] = ()  # calling AE titles allowed to connect (empty: any)
    quiet_s: float = 10.0
    max_pending: int = 2000
    wait_s: float = 60.0
    keep_received: bool = False
    domain: bool = True  # predict's domain check: no SEG for inputs unlike the model's training images
    retry_s: float = 60.0  # first re-send to a destination that failed; then doubling ...
    retry_max_s: float = 3600.0  # ... up to this
    overlay_sc: bool = False  # also send the overlay as a Secondary Capture (viewers without SEG support)
    tls: Optional[TlsSettings] = None  # DICOM TLS: our certificate / key; ca_file: senders need one it signed
    keep_results_s: float = 0.0  # results kept this long once delivered everywhere (inf: never removed)
    max_frame_pixels: int = 8192 * 8192 * 3  # larger frames are refused as "out of resources"


@dataclass
class _Study:
    files: list = field(default_factory=list)
    last: float = 0.0


@dataclass
class Stats:
    received: int = 0
    refused: int = 0  # C-STOREs answered with a failure status
    rejected: int = 0  # associations refused (AE titles)
    duplicates: int = 0  # re-sent images already segmented with the same key: nothing sent
    replaced: int = 0  # SEGs sent that replace an earlier one
    not_images: int = 0  # SEG, SR, PR, KO ... received and skipped
    studies: int = 0
    segmented: int = 0  # image instances segmented
    segs_sent: int = 0  # files stored at PACS destinations: SEGs (and overlay captures with overlay_sc)
    failures: int = 0
    resent: int = 0  # deliveries completed by a re-send
    busy_s: float = 0.0  # time spent segmenting and sending


class Listener:
    def __init__(self, settings: ListenerSettings, predictor, sinks: Sequence = (),
                 on_study: Optional[Callable[[object], None]] = None):
        self.s = settings
        self.predictor, self.sinks, self.on_study = predictor, list(sinks), on_study
        self.incoming = Path(settings.work_dir) / "incoming"
        self.results = Path(settings.work_dir) / "results"
        self.kept = Path(settings.work_dir) / "kept"  # received instances kept (keep_received) once delivered
        self.outbox = Outbox(Path(settings.work_dir) / "outbox")
        self.ledger = Ledger(Path(settings.work_dir) / "ledger.sqlite")
        self._next_prune = 0.0
        self._deliveries: list[Delivery] = []  # waiting for a re-send
        self.stats = Stats()
        self._cond = threading.Condition()
        self._studies: dict[str, _Study] = {}
        self._pending = 0
        self._busy = False
        self._stop = False
        self._flush = False
        self._server = None
        self._thread: Optional[threading.Thread] = None

    # -- life cycle -----------------------------------------------------------------------------
    def start(self) -> "Listener":
        from sonoseg.pacs.dimse import quiet_pynetdicom, storage_scp_contexts

        quiet_pynetdicom()
        from pynetdicom import AE, VerificationPresentationContexts, evt

        from sonoseg.pacs.dimse import log_rejected

        self.incoming.mkdir(parents=True, exist_ok=True)
        self.results.mkdir(parents=True, exist_ok=True)
        self._recover()
        self._clean_results()
        ae = AE(ae_title=self.s.ae_title)
        ae.supported_contexts = storage_scp_contexts() + VerificationPresentationContexts
        if self.s.allowed_aets:
            ae.require_calling_aet = list(self.s.allowed_aets)
        ae.require_called_aet = True
        ae.maximum_associations = 16
        rejected = log_rejected(log, self.s.ae_title)

        def on_rejected(event) -> None:
            self.stats.rejected += 1
            rejected(event)

        ssl_context = self.s.tls.server_context() if self.s.tls is not None else None
        self._thread = threading.Thread(target=self._work, name="sonoseg-listener", daemon=True)
        self._thread.start()
        try:
            self._server = ae.start_server((self.s.host, int(self.s.port)), block=False, ssl_context=ssl_context,
                                           evt_handlers=[(evt.EVT_C_STORE, self._on_store),
                                                         (evt.EVT_REJECTED, on_rejected)])
        except OSError as exc:
            self.stop(flush=False)
            raise SonosegError(f"cannot listen on {self.s.host}:{self.s.port} ({exc.strerror or reason(exc)})") \
                from None
        allowed = ", ".join(self.s.allowed_aets) or "any"
        log.info("listening as %s on %s:%s%s (calling AE titles allowed: %s)", self.s.ae_title, self.s.host,
                 self.s.port, " with TLS" if ssl_context is not None else "", allowed)
        return self

    def stop(self, flush: bool = True, timeout: float = 600.0) -> None:
        """Stop receiving; with ``flush`` segment what has arrived first (else it waits on disk for the
        next start)."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        with self._cond:
            self._flush, self._stop = flush, True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wait_idle(self, timeout: float) -> bool:
        """True once nothing is pending or being segmented (tests, benchmarks)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0 and not self._busy, timeout)

    def __enter__(self) -> "Listener":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- receiving ------------------------------------------------------------------------------
    def _recover(self) -> None:
        claimed = set()  # instances already segmented, whose results wait for a re-send
        names = {s.name for s in self.sinks}
        for dl in self.outbox.load(log.warning):
            gone = [n for n in dl.pending if n not in names]
            if gone:
                log.warning("%s: destination(s) %s no longer configured: not sent there", dl.tag, ", ".join(gone))
                dl.pending = [n for n in dl.pending if n in names]
            dl.next_try = 0.0  # due now
            self._deliveries.append(dl)
            claimed |= {str(Path(f).resolve()) for f in dl.sources}
            log.info("%s: results waiting for %s left by the last run, to be sent", dl.tag,
                     ", ".join(dl.pending) or "no destination")
        for d in sorted(p for p in self.incoming.iterdir() if p.is_dir()):
            files = sorted(f for f in d.glob("*.dcm") if not f.name.startswith(".") and str(f.resolve()) not in claimed)
            for f in d.glob(".*.part"):
                f.unlink(missing_ok=True)
            if files:
                self._studies[d.name] = _Study(files, time.monotonic())
                self._pending += len(files)
                log.info("%s: %d instance(s) left by the last run, queued again", d.name, len(files))

    def _on_store(self, event) -> int:
        """Check, write, then answer: one log line per instance, with the status the sender gets."""
        rq = event.assoc.requestor
        peer = f"{str(rq.ae_title).strip()}@{rq.address}"
        try:
            ds = event.dataset
            study, sop = str(ds.StudyInstanceUID), str(event.request.AffectedSOPInstanceUID)
            refusal = check_instance(ds, event.file_meta.TransferSyntaxUID, self.s.max_frame_pixels)
        except Exception as exc:  # noqa: BLE001 - a dataset that cannot even be parsed
            return self._refuse("-", "-", peer, CANNOT_UNDERSTAND, f"unreadable data set ({reason(exc)})")
        tag, inst = study_tag(study), "instance-" + hashlib.sha256(sop.encode()).hexdigest()[:8]
        if refusal is not None:
            return self._refuse(tag, inst, peer, refusal.status, refusal.reason)
        with self._cond:
            if not self._cond.wait_for(lambda: self._pending < self.s.max_pending or self._stop, self.s.wait_s) \
                    or self._stop:
                return self._refuse(tag, inst, peer, OUT_OF_RESOURCES, f"queue full ({self._pending} instances "
                                                                        "waiting): the sender may try again later")
            self._pending += 1  # room reserved before the (slow) write, released on failure
        try:
            path = save_encoded(event.encoded_dataset(include_meta=True), study, sop, self.incoming)
        except Exception as exc:  # noqa: BLE001 - a bad instance is refused, the listener goes on
            with self._cond:
                self._pending -= 1
                self._cond.notify_all()
            status = OUT_OF_RESOURCES if isinstance(exc, OSError) else CANNOT_UNDERSTAND
            return self._refuse(tag, inst, peer, status, f"not stored: {reason(exc)}")
        with self._cond:
            st = self._studies.setdefault(tag, _Study())
            st.files.append(path)
            st.last = time.monotonic()
            self.stats.received += 1
            self._cond.notify_all()
        log.info("%s: %s from %s: stored (0x0000)", tag, inst, peer)
        return 0x0000

    def _refuse(self, tag: str, inst: str, peer: str, status: int, why: str) -> int:
        with self._cond:
            self.stats.refused += 1
        log.warning("%s: %s from %s: refused (0x%04X): %s", tag, inst, peer, status, why)
        return status

    # -- segmenting -----------------------------------------------------------------------------
    def _next_ready(self) -> Optional[tuple[str, list]]:
        """Called with the lock held: the quietest complete study, or None."""
        now = time.monotonic()
        ready = [(st.last, tag) for tag, st in self._studies.items()
                 if self._flush and self._stop or now - st.last >= self.s.quiet_s]
        if not ready:
            return None
        tag = min(ready)[1]
        return tag, self._studies.pop(tag).files

    def _work(self) -> None:
        while True:
            with self._cond:
                while True:
                    due = [] if self._stop else Outbox.due(self._deliveries)
                    job = None if due else self._next_ready()
                    if due or job is not None or (self._stop and (not self._flush or not self._studies)):
                        break
                    if time.time() >= self._next_prune:  # delivered results whose time has come
                        self._prune()
                    waits = [self.s.quiet_s - (time.monotonic() - st.last) for st in self._studies.values()]
                    waits += [d.next_try - time.time() for d in self._deliveries]
                    waits.append(min(self._next_prune - time.time(), 1.0))
                    self._cond.wait(max(min(waits), 0.01))
                if due:
                    self._deliveries = [d for d in self._deliveries if all(d is not x for x in due)]
                elif job is None:
                    return  # re-sends still waiting stay in the outbox for the next start
                self._busy = True
            if due:
                try:
                    for d in due:
                        self._deliver(d)
                finally:
                    with self._cond:
                        self._busy = False
                        self._cond.notify_all()
                continue
            tag, files = job
            t0 = time.perf_counter()
            try:
                self._process(tag, files)
            finally:
                with self._cond:
                    self.stats.busy_s += time.perf_counter() - t0
                    self._pending -= len(files)
                    self._busy = False
                    self._cond.notify_all()

    def _process(self, tag: str, files: list) -> None:
        from sonoseg.pacs.ledger import settings_key
        from sonoseg.pacs.segment import SegmentOptions, segment_study

        t0 = time.perf_counter()
        out = self.results / tag / (time.strftime("%Y%m%dT%H%M%S") + f"-{time.monotonic_ns() % 10**6:06d}")
        self.stats.studies += 1
        try:
            key = settings_key(self.predictor, domain=self.s.domain, overlay_sc=self.s.overlay_sc)
            opts = SegmentOptions(domain=self.s.domain, overlay_sc=self.s.overlay_sc, ledger=self.ledger,
                                  settings=key)
            res = segment_study(tag, files, out, self.predictor, opts, log=log.warning)
        except Exception as exc:  # noqa: BLE001 - one study must not stop the listener
            log.error("%s: segmentation failed: %s; its %d instance(s) stay in %s", tag, reason(exc), len(files),
                      files[0].parent)
            self.stats.failures += 1
            return
        self.stats.segmented += res.images
        self.stats.duplicates += len(res.duplicates)
        self.stats.replaced += res.replaced
        self.stats.not_images += res.skipped
        if res.duplicates:
            log.info("%s: %d image(s) already segmented with this model and settings: not segmented or sent again",
                     tag, len(res.duplicates))
            self._finish_sources(tag, res.duplicates)
        files = [f for f in files if f not in set(res.duplicates)]
        if not res.images:  # nothing new: no delivery (the results store already has these images too)
            self._finish_sources(tag, files)
            if res.skipped:
                log.info("%s: %s skipped", tag, describe_skipped(res.not_images))
            return
        dl = Delivery(tag, str(out), [str(p) for p in res.segs + res.captures], [str(f) for f in files],
                      [s.name for s in self.sinks])
        self.outbox.save(dl)  # before anything is sent: a crash from here on never segments it again
        self.ledger.record(res.records, key, str(self.predictor.model_version))
        sent = self._deliver(dl)
        extra = (f", {len(res.captures)} overlay capture(s)" if res.captures else "") + \
                (f", {res.replaced} replacing earlier SEGs" if res.replaced else "") + \
                (f", {res.out_of_scope} out of scope (no SEG)" if res.out_of_scope else "") + \
                (f", {len(res.failed)} failed" if res.failed else "") + \
                (f", {describe_skipped(res.not_images)} skipped" if res.skipped else "")
        log.info("%s: %d image(s) segmented, %d SEG(s)%s; sent %s; %.1f s", tag, res.images, len(res.segs), extra,
                 ", ".join(sent) or "nowhere (no destination)", time.perf_counter() - t0)
        if self.on_study is not None:
            self.on_study(res)

    # -- sending ----------------------------------------------------------------------------------
    def _deliver(self, dl: Delivery) -> list[str]:
        """Send ``dl`` to the destinations it still waits for; record each success at once; schedule a
        re-send for the failed ones, or finish (record and received instances removed). Returns what
        was sent, for the log line."""
        sinks = {s.name: s for s in self.sinks}
        segs, sources = [Path(p) for p in dl.segs], [Path(p) for p in dl.sources]
        gone = [p for p in segs if not p.exists()]
        if gone:  # removed by hand since: send what is left rather than retry a missing file forever
            log.error("%s: %d result file(s) no longer in %s: not sent", dl.tag, len(gone), dl.results)
            segs = [p for p in segs if p.exists()]
        sent, retry = [], dl.attempts > 0
        for name in list(dl.pending):
            sink = sinks.get(name)
            if sink is None:
                dl.pending.remove(name)
                continue
            try:
                n = sink.send(segs, sources)
            except (SonosegError, OSError, RuntimeError, ValueError) as exc:
                self.stats.failures += 1
                dl.errors[name] = reason(exc)
                log.error("%s: sending to %s failed: %s; SEGs kept in %s", dl.tag, name, reason(exc), dl.results)
                continue
            dl.pending.remove(name)
            dl.done.append(name)
            dl.errors.pop(name, None)
            self.outbox.save(dl)  # this destination is done, whatever happens next
            sent.append(f"{n} to {name}")
            if name != "results store":
                self.stats.segs_sent += n
            if retry:
                log.info("%s: sent %d to %s (attempt %d)", dl.tag, n, name, dl.attempts + 1)
        if dl.pending:
            dl.attempts += 1
            wait = dl.backoff(self.s.retry_s, self.s.retry_max_s)
            dl.next_try = time.time() + wait
            self.outbox.save(dl)
            with self._cond:
                self._deliveries.append(dl)
                self._cond.notify_all()
            log.warning("%s: %s still to be sent; next try in %.0f s", dl.tag, ", ".join(dl.pending), wait)
            return sent
        if retry:
            self.stats.resent += 1
        self._finish_sources(dl.tag, sources)
        self._delivered(Path(dl.results))
        self.outbox.remove(dl)
        return sent

    def _finish_sources(self, tag: str, sources) -> None:
        """Received instances done with: kept ones move out of incoming/ (or a restart would segment them
        again), the others are removed."""
        for f in map(Path, sources):
            if self.s.keep_received and f.exists():
                (self.kept / tag).mkdir(parents=True, exist_ok=True)
                os.replace(f, self.kept / tag / f.name)
            else:
                f.unlink(missing_ok=True)
        try:
            (self.incoming / tag).rmdir()
        except OSError:
            pass  # more instances of the study arrived meanwhile

    # -- housekeeping -------------------------------------------------------------------------------
    def _delivered(self, folder: Path) -> None:
        """Every destination has this batch: mark it, and remove it now or when its time has come."""
        if folder.is_dir():
            (folder / DELIVERED).write_text(f"{time.time()!r}\n")  # exact: a rounded-up time would wait
        self._prune()

    def _prune(self) -> None:
        """Remove delivered results older than ``keep_results_s`` (none while there is no destination:
        the results folder is then the only output)."""
        now = time.time()
        self._next_prune = now + min(max(self.s.keep_results_s / 10, 1.0), 600.0)
        if not self.sinks or math.isinf(self.s.keep_results_s):
            self._next_prune = math.inf
            return
        for marker in self.results.glob(f"*/*/{DELIVERED}"):
            try:
                at = float(marker.read_text().strip() or 0)
            except (OSError, ValueError):
                at = 0.0
            if self.s.keep_results_s <= 0 or now - at >= self.s.keep_results_s:
                _remove_run(marker.parent)

    def _clean_results(self) -> None:
        """At start: results folders that neither wait for a re-send nor were delivered are what a killed
        segmentation left (its instances are still in incoming/ and are segmented again): removed."""
        waiting = {str(Path(d.results).resolve()) for d in self._deliveries}
        for run in self.results.glob("*/*"):
            if run.is_dir() and not (run / DELIVERED).exists() and str(run.resolve()) not in waiting:
                log.info("%s: removing %s, left by a segmentation that did not finish", run.parent.name, run.name)
                _remove_run(run)
        self._prune()

    @property
    def waiting(self) -> list[Delivery]:
        """Deliveries waiting for a re-send (a copy)."""
        with self._cond:
            return list(self._deliveries)


def _remove_run(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    try:
        folder.parent.rmdir()  # the study's folder, once empty
    except OSError:
        pass
