"""The background worker: a thread that claims queued jobs one at a time and runs them. The queue
lives in the database, so a restarted server picks up where the last one stopped."""

from __future__ import annotations

import logging
import threading
from typing import Optional

from sonoseg.errors import SonosegError
from sonoseg.store import Store, jobs

log = logging.getLogger("sonoseg.serve")
_MODELS: dict = {}
_MODELS_LOCK = threading.Lock()


def load_model(path=None):
    """(Predictor, ModelInfo), loaded once per process and model file: loading takes seconds, a
    prediction a fraction of one."""
    from sonoseg.infer.predictor import Predictor
    from sonoseg.serve.processing import model_info

    from sonoseg.models.shipped import resolve_model

    path = resolve_model(path, "serve")  # None -> the accurate tier
    key = str(path)
    with _MODELS_LOCK:
        if key not in _MODELS:
            pred = Predictor.from_path(path, log=log.info)
            _MODELS[key] = (pred, model_info(path, pred.model_version))
        return _MODELS[key]


class Worker:
    """``limits``: the memory budget each job is checked against from its header before anything is
    decoded (serve/guard.py), whatever queued it (upload, ``pacs --store``, a restart's re-queue)."""

    def __init__(self, store: Store, model=None, poll_s: float = 0.5, max_frames: int = 64, limits=None,
                 keep_identifiers: bool = False):
        from sonoseg.serve.guard import Limits
        from sonoseg.serve.uploads import DEFAULT_JOB_MB

        self.store, self.model_path, self.poll_s, self.max_frames = store, model, poll_s, max_frames
        self.limits = limits or Limits.of(DEFAULT_JOB_MB)
        self.keep_identifiers = keep_identifiers
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._predictor = None
        self._info = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="sonoseg-worker", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 60.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _load(self):
        if self._predictor is None:
            self._predictor, self._info = load_model(self.model_path)
        return self._predictor, self._info

    def run_once(self) -> bool:
        """Claim and run one job; False when the queue is empty."""
        from sonoseg.serve.guard import check
        from sonoseg.serve.processing import run_job

        with self.store.session() as s:
            job = jobs.claim_next(s)
        if job is None:
            return False
        try:
            src = self.store.find_spooled(job.id)
            if src is not None:
                check(src, job.format, self.limits)  # refused from the header: never decoded
            predictor, info = self._load()
            run_job(self.store, job, predictor, info, self.max_frames, self.keep_identifiers)
            log.info("job %s done", job.id)
        except Exception as exc:  # noqa: BLE001 - one bad job must not stop the worker
            reason = (str(exc) if isinstance(exc, SonosegError) else f"{type(exc).__name__}: {exc}").splitlines()[0] \
                if str(exc) else type(exc).__name__
            with self.store.session() as s, s.begin():
                jobs.fail(s, job.id, reason)
            log.warning("job %s failed: %s", job.id, reason)
        finally:
            spooled = self.store.find_spooled(job.id)
            if spooled is not None:
                spooled.unlink(missing_ok=True)  # the input is not kept once the job has ended
        return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.run_once()
            except Exception:  # noqa: BLE001 - e.g. database briefly unavailable: retry later
                log.exception("worker loop")
                busy = False
            if not busy:
                self._wake.wait(self.poll_s)
                self._wake.clear()
