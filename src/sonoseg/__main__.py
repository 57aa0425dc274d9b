"""``python -m sonoseg`` (and ``torchrun -m sonoseg train ...``)."""

from sonoseg.cli.main import app

app()
