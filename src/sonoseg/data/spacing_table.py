"""Per-image pixel spacing for a folder of inputs, from a table: ``--spacing-file CSV`` or the dataset's
``labels.csv``.

Images of one folder often have different pixel sizes (each scan's depth setting); exported PNGs
carry none. ``evaluate`` reads a dataset's ``labels.csv`` spacing column; ``predict`` and ``measure``
read the same table, so one call measures a whole folder in millimetres:

- ``--spacing-file CSV``: a table with an image column and a spacing column (the column names
  ``labels.csv`` accepts, see :mod:`sonoseg.data.layout`); source ``"spacing file"``;
- otherwise, for each input, a ``labels.csv`` beside it, or one folder up when the input lies in a
  dataset's ``images/`` or ``masks/`` folder; source ``"labels.csv"``.

Rows are matched by file stem (``images/a.png`` and ``masks/a.png`` are both ``a``). A ``labels.csv``
without an image or spacing column is not a spacing table and is ignored; an explicit
``--spacing-file`` without one is an error naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from sonoseg.errors import InputError

FILE_SOURCE = "spacing file"
DATASET_FOLDERS = ("images", "masks")


class SpacingTable:
    """``lookup(path) -> (spacing, source)``; ``(None, None)`` when no table lists the file."""

    def __init__(self, spacing_file: Optional[str | Path] = None):
        self._explicit = Path(spacing_file) if spacing_file is not None else None
        self._tables: dict[Path, Optional[dict]] = {}
        if self._explicit is not None:
            table = self._read(self._explicit, required=True)
            self._tables[self._explicit] = table

    @staticmethod
    def _read(path: Path, required: bool) -> Optional[dict]:
        from sonoseg.data.layout import IMAGE_COLUMNS, SPACING_COLUMNS, pick_column, read_csv_records, read_labels

        if required and not path.is_file():
            raise InputError(path, "spacing file not found")
        if not required and pick_column(read_csv_records(path, "labels file")[0], IMAGE_COLUMNS) is None:
            return None  # some other CSV: not a table of images
        table = read_labels(path)  # a malformed spacing value is an error naming the file and image
        if not table.spacing:
            if required:
                raise InputError(path, f"no spacing values (expected an image column ({', '.join(IMAGE_COLUMNS)}) "
                                       f"and a spacing column ({', '.join(SPACING_COLUMNS)} or spacing_row/spacing_col))")
            return None
        return table.spacing

    def _candidates(self, path: Path) -> list[Path]:
        if self._explicit is not None:
            return [self._explicit]
        from sonoseg.data.layout import LABELS_FILE

        folder = path.parent
        out = [folder / LABELS_FILE]
        if folder.name.lower() in DATASET_FOLDERS:
            out.append(folder.parent / LABELS_FILE)
        return out

    def lookup(self, path: str | Path) -> tuple[Optional[tuple[float, float]], Optional[str]]:
        from sonoseg.data.layout import file_stem

        path = Path(path)
        stem = file_stem(path)
        for cand in self._candidates(path):
            if cand not in self._tables:
                self._tables[cand] = self._read(cand, required=False) if cand.is_file() else None
            table = self._tables[cand]
            if table and stem in table:
                return table[stem], FILE_SOURCE if self._explicit is not None else "labels.csv"
        return None, None
