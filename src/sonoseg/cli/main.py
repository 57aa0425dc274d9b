"""``sonoseg <verb>``: a thin CLI over the library API. Each verb lives in its own module that
exposes ``register(app)``; this file only wires them together."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    name="sonoseg",
    help=("Ultrasound segmentation: ingest, preprocess, split, train, evaluate, predict, measure, export. "
          "Flags mean one thing in every verb: --model a trained model file, --arch an architecture, "
          "-c/--config a YAML config, --spacing ROW_MM[,COL_MM] a pixel size."),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

def _version(value: bool) -> None:
    if value:
        from sonoseg import __version__

        typer.echo(f"sonoseg {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors on the terminal."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging and library warnings on the terminal."),
    log_file: Optional[Path] = typer.Option(None, "--log-file", help="Write the full log (library warnings included) here."),
) -> None:
    """Ultrasound segmentation: ingest, preprocess, split, train, evaluate, predict, measure, export.

    Flag names mean one thing in every verb: --model is a trained model file (.pt/.onnx/.ts),
    --arch an architecture name, -c/--config a YAML config, --spacing ROW_MM[,COL_MM] a pixel size."""
    from sonoseg.cli.logging_setup import setup_logging

    setup_logging(quiet, verbose, log_file)
    from sonoseg.redact import install

    install()  # third-party warnings/logs quote header values: keep identifiers off every stream


# Order = order in --help.
COMMAND_MODULES = [
    "demo",
    "predict",
    "measure",
    "models",
    "inspect",
    "convert",
    "preprocess",
    "split",
    "validate",
    "train",
    "evaluate",
    "experiment",
    "ensemble",
    "export",
    "benchmark",
    "phantom",
    "serve",
    "pacs",
    "listen",
    "users",
    "keys",
    "audit",
]

for _name in COMMAND_MODULES:
    _mod_name = f"sonoseg.cli.{_name}_cmd"
    if importlib.util.find_spec(_mod_name) is None:
        continue  # verb not built yet in this version
    importlib.import_module(_mod_name).register(app)


@app.command("version")
def version() -> None:
    """Print the sonoseg version."""
    from sonoseg import __version__

    typer.echo(__version__)


if __name__ == "__main__":  # pragma: no cover
    app()
