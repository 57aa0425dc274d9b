"""Shared CLI helpers: one rich console, one-line coloured errors, progress bars."""

from __future__ import annotations

import functools
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console

from sonoseg.errors import SonosegError, reason
from sonoseg.progress import progress, track  # noqa: F401  (re-exported for the verbs)

# soft_wrap: messages are never broken at the console width (80 columns when there is no terminal),
# so logs and tests read the same on any terminal or none.
# Tables: without a terminal rich would squeeze them into 80 columns (file names cut to "sample_…");
# logs and pipes get a fixed 160 instead, the same on every machine.
console = Console(stderr=False, highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 160)

TENTATIVE_OPTION = typer.Option(
    None, "--tentative-outline/--no-tentative-outline",
    help="Where the class head finds a lesion but the mask is empty, outline the region the mask head was most "
         "sure of, marked tentative (default: the model's setting).")
THREADS_OPTION = typer.Option(
    None, "--threads", min=1,
    help="CPU threads (default: $SONOSEG_THREADS, else the cores this process may use minus those already busy).")

def say(message: str) -> None:
    """A progress or result line (an epoch, a metric): on the terminal unless --quiet, and in the
    --log-file as INFO of ``sonoseg.cli`` (markup removed)."""
    import logging

    console.print(message, highlight=False)
    log = logging.getLogger("sonoseg.cli")
    if log.isEnabledFor(logging.INFO):
        from rich.errors import MarkupError
        from rich.text import Text

        try:
            plain = Text.from_markup(str(message)).plain
        except MarkupError:
            plain = str(message)
        log.info(plain)


def show_result(renderable) -> None:
    """A verb's result (a table of metrics): on the terminal even with --quiet, which removes the chatter
    around a result, not the result; and in the --log-file as plain text."""
    import io
    import logging

    quiet, console.quiet = console.quiet, False
    try:
        console.print(renderable)
    finally:
        console.quiet = quiet
    log = logging.getLogger("sonoseg.cli")
    if log.isEnabledFor(logging.INFO):
        buf = io.StringIO()
        Console(file=buf, width=160, color_system=None, highlight=False, soft_wrap=True).print(renderable)
        log.info("\n%s", buf.getvalue().rstrip())


def error_line(message: str) -> None:
    """Print one red line on stderr (first line of the message only); also into the --log-file."""
    import logging

    first = str(message).splitlines()[0] if str(message) else "error"
    if logging.getLogger().handlers:  # set up by the CLI (else logging's last resort would print it twice)
        logging.getLogger("sonoseg.cli").error(first)
    err_console.print(f"[bold red]error:[/] {first}", markup=True, highlight=False, soft_wrap=True)


def note_line(message: str) -> None:
    """One dim informational line on stderr (what the library chose or built)."""
    err_console.print(message, style="dim", markup=False, highlight=False, soft_wrap=True)


def per_dataset(values: list, datasets: list, flag: str, required: bool = False) -> list:
    """A repeated option paired with repeated DATASET arguments by position: one value per dataset (or
    none at all, unless ``required``: then a list of None). ConfigError (exit 2) otherwise."""
    from sonoseg.errors import ConfigError

    if (values or required) and len(values) != len(datasets):
        raise ConfigError(f"{len(datasets)} dataset(s) but {len(values)} {flag} value(s): give one per dataset, in order")
    return list(values) if values else [None] * len(datasets)


def fail(message: str, code: int = 1) -> None:
    error_line(message)
    raise typer.Exit(code)


def handle_errors(fn: Callable) -> Callable:
    """Decorator for commands: SonosegError, file and disk errors (read-only folder, disk full) and
    MemoryError become one coloured line in words + a non-zero exit, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except SonosegError as exc:
            fail(str(exc), code=2)
        except OSError as exc:
            fail(reason(exc), code=2)
        except MemoryError as exc:
            fail(f"{reason(exc)}; try a smaller --batch-size or fewer inputs", code=3)
        except RecursionError as exc:
            fail(reason(exc), code=2)

    return wrapper


@contextmanager
def frame_progress(enabled: bool = True):
    """A ``progress(name, done, total)`` callback for the library's per-frame progress: one bar per
    input, counting frames (a 120-frame cine moves frame by frame, not file by file)."""
    if not enabled:
        yield None
        return
    with progress() as p:
        tasks: dict = {}

        def update(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = p.add_task(name, total=total)
            p.update(tasks[name], completed=done, total=total)

        yield update


def deprecated(old: str, new: str) -> None:
    """One yellow line on stderr: the old flag still works this release."""
    err_console.print(f"[yellow]warning:[/] {old} is deprecated and will be removed in the next release; use {new}",
                      markup=True, highlight=False, soft_wrap=True)


def model_flags(model: Optional[str], arch: Optional[str] = None, checkpoint: Optional[Path] = None):
    """``(model file | None, arch | None)`` from --model/--arch and the deprecated spellings:
    ``--checkpoint``/``-c`` (export, benchmark) and ``--model ARCH_NAME`` (train, benchmark), which
    keep working this release with a deprecation line."""
    if checkpoint is not None:
        deprecated("--checkpoint/-c (a trained model file)", "--model/-m")
        model = model or str(checkpoint)
    if model is not None and arch is None and not Path(model).exists():
        from sonoseg.models import list_models

        if model.strip().lower() in list_models():
            deprecated(f"--model {model} (an architecture name)", f"--arch {model}")
            return None, model
    return (Path(model) if model is not None else None), arch


def parse_tta(values) -> tuple[str, ...] | None:
    """CLI --tta: nothing given -> None (use the model's setting); 'none' -> no TTA; else h/v flips."""
    vals = [v.strip().lower() for v in values or [] if v.strip()]
    if not vals:
        return None
    if vals == ["none"]:
        return ()
    bad = [v for v in vals if v not in ("h", "v")]
    if bad:
        raise typer.BadParameter(f"--tta takes h, v or none, not {bad[0]!r}")
    return tuple(vals)
