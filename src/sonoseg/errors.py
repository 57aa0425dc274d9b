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
