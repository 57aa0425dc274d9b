"""Progress bars for long library work (preprocessing caches, epochs, frames): rich on stderr, hidden
when stderr is not a terminal. A library-level helper so library code never imports the CLI."""

from __future__ import annotations

import sys
from typing import Iterable, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")
_stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def progress() -> Progress:
    """A progress bar on stderr that hides itself when not a terminal (CI logs stay clean)."""
    return Progress(
        TextColumn("[bold blue]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=_stderr,
        transient=True,
        disable=not sys.stderr.isatty(),
    )


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterable[T]:
    with progress() as p:
        task = p.add_task(description, total=total if total is not None else (len(items) if hasattr(items, "__len__") else None))
        for item in items:
            yield item
            p.advance(task)
