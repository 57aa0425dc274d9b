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
* Logs name studies by a hash of their UID and never print header values.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from sonoseg.errors import SonosegError, reason
from sonoseg.pacs.files import save_encoded
from sonoseg.pacs.outbox import Delivery, Outbox
from sonoseg.pacs.query import study_tag

log = logging.getLogger("sonoseg.pacs.listener")
OUT_OF_RESOURCES, CANNOT_UNDERSTAND = 0xA700, 0xC210


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


@dataclass
class _Study:
    files: list = field(default_factory=list)
    last: float = 0.0


@dataclass
class Stats:
    received: int = 0
    refused: int = 0
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

        self.incoming.mkdir(parents=True, exist_ok=True)
        self.results.mkdir(parents=True, exist_ok=True)
        self._recover()
        ae = AE(ae_title=self.s.ae_title)
        ae.supported_contexts = storage_scp_contexts() + VerificationPresentationContexts
        if self.s.allowed_aets:
            ae.require_calling_aet = list(self.s.allowed_aets)
        ae.maximum_associations = 16
        self._thread = threading.Thread(target=self._work, name="sonoseg-listener", daemon=True)
        self._thread.start()
        try:
            self._server = ae.start_server((self.s.host, int(self.s.port)), block=False,
                                           evt_handlers=[(evt.EVT_C_STORE, self._on_store)])
        except OSError as exc:
            self.stop(flush=False)
            raise SonosegError(f"cannot listen on {self.s.host}:{self.s.port} ({exc.strerror or reason(exc)})") \
                from None
        allowed = ", ".join(self.s.allowed_aets) or "any"
        log.info("listening as %s on %s:%s (calling AE titles allowed: %s)", self.s.ae_title, self.s.host,
                 self.s.port, allowed)
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
        with self._cond:
            if not self._cond.wait_for(lambda: self._pending < self.s.max_pending or self._stop, self.s.wait_s) \
                    or self._stop:
                self.stats.refused += 1
                log.warning("queue full (%d instances waiting): C-STORE answered 'out of resources'", self._pending)
                return OUT_OF_RESOURCES
            self._pending += 1  # room reserved before the (slow) write, released on failure
        try:
            ds = event.dataset
            study = str(ds.StudyInstanceUID)
            path = save_encoded(event.encoded_dataset(include_meta=True), study,
                                str(event.request.AffectedSOPInstanceUID), self.incoming)
        except Exception as exc:  # noqa: BLE001 - a bad instance is refused, the listener goes on
            with self._cond:
                self._pending -= 1
                self._cond.notify_all()
            log.warning("instance refused: %s", reason(exc))
            return OUT_OF_RESOURCES if isinstance(exc, OSError) else CANNOT_UNDERSTAND
        tag = study_tag(study)
        with self._cond:
            st = self._studies.setdefault(tag, _Study())
            st.files.append(path)
            st.last = time.monotonic()
            self.stats.received += 1
            self._cond.notify_all()
        log.debug("%s: instance received from %s", tag, event.assoc.requestor.ae_title)
        return 0x0000

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
                    waits = [self.s.quiet_s - (time.monotonic() - st.last) for st in self._studies.values()]
                    waits += [d.next_try - time.time() for d in self._deliveries]
                    self._cond.wait(max(min(waits, default=1.0), 0.01))
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
        from sonoseg.pacs.segment import segment_study

        t0 = time.perf_counter()
        out = self.results / tag / (time.strftime("%Y%m%dT%H%M%S") + f"-{time.monotonic_ns() % 10**6:06d}")
        self.stats.studies += 1
        try:
            res = segment_study(tag, files, out, self.predictor, domain=self.s.domain, log=log.warning,
                                overlay_sc=self.s.overlay_sc)
        except Exception as exc:  # noqa: BLE001 - one study must not stop the listener
            log.error("%s: segmentation failed: %s; its %d instance(s) stay in %s", tag, reason(exc), len(files),
                      files[0].parent)
            self.stats.failures += 1
            return
        self.stats.segmented += res.images
        dl = Delivery(tag, str(out), [str(p) for p in res.segs + res.captures], [str(f) for f in files],
                      [s.name for s in self.sinks])
        self.outbox.save(dl)  # before anything is sent: a crash from here on never segments it again
        sent = self._deliver(dl)
        extra = (f", {len(res.captures)} overlay capture(s)" if res.captures else "") + \
                (f", {res.out_of_scope} out of scope (no SEG)" if res.out_of_scope else "") + \
                (f", {len(res.failed)} failed" if res.failed else "") + (f", {res.skipped} not images" if res.skipped else "")
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
        for f in sources:  # kept ones move out of incoming/, or a restart would segment and send them again
            if self.s.keep_received and f.exists():
                (self.kept / dl.tag).mkdir(parents=True, exist_ok=True)
                os.replace(f, self.kept / dl.tag / f.name)
            else:
                f.unlink(missing_ok=True)
        try:
            (self.incoming / dl.tag).rmdir()
        except OSError:
            pass  # more instances of the study arrived meanwhile
        self.outbox.remove(dl)
        return sent

    @property
    def waiting(self) -> list[Delivery]:
        """Deliveries waiting for a re-send (a copy)."""
        with self._cond:
            return list(self._deliveries)
