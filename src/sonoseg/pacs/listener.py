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
* Logs name studies by a hash of their UID and never print header values.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from sonoseg.errors import SonosegError, reason
from sonoseg.pacs.files import save_encoded
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
    segs_sent: int = 0
    failures: int = 0
    busy_s: float = 0.0  # time spent segmenting and sending


class Listener:
    def __init__(self, settings: ListenerSettings, predictor, sinks: Sequence = (),
                 on_study: Optional[Callable[[object], None]] = None):
        self.s = settings
        self.predictor, self.sinks, self.on_study = predictor, list(sinks), on_study
        self.incoming = Path(settings.work_dir) / "incoming"
        self.results = Path(settings.work_dir) / "results"
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
        for d in sorted(p for p in self.incoming.iterdir() if p.is_dir()):
            files = sorted(f for f in d.glob("*.dcm") if not f.name.startswith("."))
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
                    job = self._next_ready()
                    if job is not None or (self._stop and (not self._flush or not self._studies)):
                        break
                    waits = [self.s.quiet_s - (time.monotonic() - st.last) for st in self._studies.values()]
                    self._cond.wait(max(min(waits, default=1.0), 0.01))
                if job is None:
                    return
                self._busy = True
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
        ok = True
        try:
            res = segment_study(tag, files, out, self.predictor, domain=self.s.domain, log=log.warning)
        except Exception as exc:  # noqa: BLE001 - one study must not stop the listener
            log.error("%s: segmentation failed: %s; its %d instance(s) stay in %s", tag, reason(exc), len(files),
                      files[0].parent)
            self.stats.failures += 1
            return
        self.stats.segmented += res.images
        sent = []
        for sink in self.sinks:
            try:
                n = sink.send(res.segs, files)
                sent.append(f"{n} to {sink.name}")
                if sink.name != "results store":
                    self.stats.segs_sent += n
            except (SonosegError, OSError, RuntimeError, ValueError) as exc:
                ok = False
                self.stats.failures += 1
                log.error("%s: sending to %s failed: %s; SEGs kept in %s", tag, sink.name, reason(exc), out)
        extra = (f", {res.out_of_scope} out of scope (no SEG)" if res.out_of_scope else "") + \
                (f", {len(res.failed)} failed" if res.failed else "") + (f", {res.skipped} not images" if res.skipped else "")
        log.info("%s: %d image(s) segmented, %d SEG(s)%s; sent %s; %.1f s", tag, res.images, len(res.segs), extra,
                 ", ".join(sent) or "nowhere (no destination)", time.perf_counter() - t0)
        if ok and not self.s.keep_received:
            for f in files:
                Path(f).unlink(missing_ok=True)
            try:
                (self.incoming / tag).rmdir()
            except OSError:
                pass  # more instances of the study arrived meanwhile
        if self.on_study is not None:
            self.on_study(res)
