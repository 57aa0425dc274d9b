"""``--quiet`` / ``--verbose`` / ``--log-file`` for every verb, and library warnings routed to the log.

Python warnings (highdicom's PersonName notice, torch/onnx deprecations, ...) are captured by the
``logging`` module (``py.warnings`` logger): they go to the log file when one is given and to the
terminal only with ``--verbose``, so a normal run shows results, not library chatter. ``--quiet``
silences everything but errors.

The log file holds sonoseg's own record (its ``sonoseg.*`` loggers at every level, among them the
progress and result lines the verbs print: epochs, metrics, see :func:`sonoseg.cli._common.say`) and
third-party messages at WARNING and above: PIL's and matplotlib's debug chatter once filled 1.3 MB in
eight minutes of training without a single epoch line.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

_HANDLER_TAG = "_sonoseg_cli"
OWN = "sonoseg"  # our loggers: everything they say goes to the log file
SAID = "sonoseg.cli"  # lines already printed on the terminal by say(): not printed twice


def _own_or_warning(rec: logging.LogRecord) -> bool:
    return rec.name == OWN or rec.name.startswith(OWN + ".") or rec.levelno >= logging.WARNING


def setup_logging(quiet: bool = False, verbose: bool = False, log_file: Optional[Path] = None) -> None:
    from rich.logging import RichHandler

    from sonoseg.cli._common import console, err_console

    console.quiet = bool(quiet)
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, _HANDLER_TAG, False):
            root.removeHandler(h)
            h.close()
    logging.captureWarnings(False)  # re-install: someone may have replaced warnings.showwarning since
    logging.captureWarnings(True)
    term = RichHandler(console=err_console, show_time=False, show_path=False, markup=False)
    # libraries log INFO chatter (highdicom: one line per copied module): terminal shows WARNING+ only
    term.setLevel(logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING)
    term.addFilter(lambda rec: verbose or rec.name != "py.warnings")  # warnings: log file, or --verbose
    term.addFilter(lambda rec: rec.name != SAID)
    handlers = [term]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_file, encoding="utf-8")
        fh.setLevel(logging.DEBUG)
        fh.addFilter(_own_or_warning)
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handlers.append(fh)
    for h in handlers:
        setattr(h, _HANDLER_TAG, True)
        root.addHandler(h)
    # third parties' debug records are not even made unless --verbose shows them; ours reach the log file
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.getLogger(OWN).setLevel(logging.DEBUG if (verbose or log_file) else logging.NOTSET)
    logging.getLogger("sonoseg").debug("logging: quiet=%s verbose=%s log_file=%s", quiet, verbose, log_file)
