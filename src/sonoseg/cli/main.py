"""``sonoseg <verb>``: a thin CLI over the library API. Each verb lives in its own module that
exposes ``register(app)``; this file only wires them together."""

from __future__ import annotations

import importlib
import importlib.util

import typer

app = typer.Typer(
    name="sonoseg",
    help="Ultrasound segmentation: ingest, preprocess, split, train, evaluate, predict, export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

@app.callback()
def _root() -> None:
    """Ultrasound segmentation: ingest, preprocess, split, train, evaluate, predict, export."""


# Order = order in --help.
COMMAND_MODULES = [
    "demo",
    "predict",
    "inspect",
    "convert",
    "preprocess",
    "split",
    "validate",
    "train",
    "evaluate",
    "ensemble",
    "export",
    "benchmark",
    "phantom",
    "serve",
    "users",
    "keys",
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
