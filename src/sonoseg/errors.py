"""Error types. Every user-facing failure names the file and the reason in one line."""

from __future__ import annotations

from pathlib import Path


class SonosegError(Exception):
    """Base class: messages are one line, safe to print (no patient identifiers)."""


class InputError(SonosegError):
    """A single input could not be used: carries the path and a short reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason.splitlines()[0] if reason else "unknown error"
        super().__init__(f"{self.path}: {self.reason}")


class ConfigError(SonosegError):
    """Invalid configuration value or combination."""


class OutputError(SonosegError):
    """An output could not be written (disk full, read-only folder ...): path and reason in words."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason.splitlines()[0] if reason else "unknown error"
        super().__init__(f"{self.path}: {self.reason}")


_ERRNO_WORDS = {
    "ENOSPC": "no space left on the disk",
    "EDQUOT": "disk quota exceeded",
    "EROFS": "the folder is on a read-only file system",
    "EACCES": "permission denied",
    "EPERM": "operation not permitted",
    "ENOENT": "no such file or folder",
    "EISDIR": "is a folder, not a file",
    "ENOTDIR": "a part of the path is not a folder",
    "EFBIG": "file too large for the file system",
    "EIO": "input/output error (failing disk or network share?)",
    "ENAMETOOLONG": "file name too long",
    "EMFILE": "too many open files",
}


def reason(exc: BaseException) -> str:
    """A failure described in words (never a bare exception class name); one line, no values that
    could come from a patient field (only messages we produce ourselves are passed through whole)."""
    import errno as _errno

    if isinstance(exc, SonosegError):
        return str(exc).splitlines()[0] if str(exc) else "error"
    if isinstance(exc, MemoryError):
        return "out of memory (the input is too large for the available memory)"
    if isinstance(exc, RecursionError):
        return "structure nested too deeply (corrupt or hostile file)"
    if isinstance(exc, OSError):
        code = _errno.errorcode.get(exc.errno or -1, "")
        words = _ERRNO_WORDS.get(code) or (exc.strerror or "input/output error").lower()
        where = getattr(exc, "filename", None)
        return f"{where}: {words}" if where else words
    if isinstance(exc, AttributeError):
        name = getattr(exc, "name", None)
        return f"a required attribute is missing ({name})" if name else "a required attribute is missing"
    if isinstance(exc, (KeyError, IndexError)):
        return "a required element is missing or out of range (corrupt or inconsistent file)"
    if isinstance(exc, (ValueError, TypeError, ArithmeticError)):
        first = str(exc).splitlines()[0][:160] if str(exc) else ""
        return f"invalid or inconsistent values ({first})" if first else "invalid or inconsistent values"
    if isinstance(exc, EOFError):
        return "file ends too early (truncated)"
    first = str(exc).splitlines()[0][:160] if str(exc) else ""
    return f"unexpected failure ({first})" if first else "unexpected failure"


class PacsError(SonosegError):
    """A PACS refused or failed a request: the server's name and the reason, one line, no identifiers."""
