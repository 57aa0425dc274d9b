"""Outputs that are either complete or absent, and one temporary folder per run.

Every output is written under a temporary name in its own folder, flushed, fsync'ed and renamed over
the final name (``os.replace`` is atomic on POSIX), so a full disk, a kill or a crash never leaves a
half-written mask or an empty ``results.json`` behind; any failure is raised as OutputError in words
("no space left on the disk") instead of a silent False from a writer such as ``cv2.imwrite``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Iterator

from sonoseg.errors import OutputError, reason

TMP_PREFIX = ".sonoseg-tmp-"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _suffixes(path: Path) -> str:
    name = path.name
    return ".nii.gz" if name.lower().endswith(".nii.gz") else path.suffix


@contextlib.contextmanager
def atomic_path(path: str | Path, what: str = "output") -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (same extension, so format-by-name writers work);
    on success it is fsync'ed and renamed to ``path``; on any failure it is removed and an OutputError
    naming ``path`` is raised."""
    path = Path(path)
    if not path.parent.is_dir():
        raise OutputError(path, f"cannot write {what}: the folder {path.parent} does not exist")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial" + _suffixes(path), dir=path.parent)
    except OSError as exc:
        raise OutputError(path, f"cannot write {what}: {_words(exc)}") from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise OutputError(path, f"cannot write {what}: the writer produced nothing (disk full or not writable?)")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OutputError:
        tmp.unlink(missing_ok=True)
        raise
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, (OSError, MemoryError)):
            raise OutputError(path, f"cannot write {what}: {_words(exc)}") from exc
        raise


def _words(exc: BaseException) -> str:
    """The reason without the file name (the caller names the output)."""
    if isinstance(exc, OSError) and getattr(exc, "filename", None):
        exc = OSError(exc.errno, exc.strerror)
    return reason(exc)


def write_bytes(path: str | Path, data: bytes, what: str = "output") -> Path:
    with atomic_path(path, what) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
    return Path(path)


def write_text(path: str | Path, text: str, what: str = "output") -> Path:
    return write_bytes(path, text.encode("utf-8"), what)


@contextlib.contextmanager
def run_tempdir(parent: str | Path) -> Iterator[Path]:
    """One temporary folder per run inside ``parent`` (same disk as the outputs), removed on every
    exit path: normal return, exceptions, Ctrl-C and SIGTERM (turned into SystemExit while the run
    lasts). Folders left by runs that were SIGKILLed (their pid is gone) are removed at the next start.
    Python runs the handler wherever the main thread is, and a SystemExit raised inside a finaliser or a
    garbage-collector callback is printed and ignored: a run that finishes after such a SIGTERM still exits
    with 128 + SIGTERM, not 0."""
    parent = Path(parent)
    clean_stale(parent)
    folder = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", dir=parent))
    previous = None
    received: list[int] = []
    if threading.current_thread() is threading.main_thread():
        def _term(signum, frame):
            received.append(signum)
            raise SystemExit(128 + signum)

        try:
            previous = signal.signal(signal.SIGTERM, _term)
        except (ValueError, OSError):
            previous = None
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if received:  # the SystemExit was swallowed where Python ignores exceptions: stop now, as signalled
        raise SystemExit(128 + received[0])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(parent: Path) -> list[Path]:
    """Remove temporary folders of dead runs (named ``.sonoseg-tmp-<pid>-*``)."""
    removed = []
    if not parent.is_dir():
        return removed
    for d in parent.glob(f"{TMP_PREFIX}*"):
        try:
            pid = int(d.name[len(TMP_PREFIX):].split("-")[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed
