"""Package every fold model of a cross-validation run as it would ship, into a CV folder of its own.

Usage: python scripts/package_cv_folds.py runs/cv5 runs/cv5_int8 [--storage int8|fp16] [--finished-only]

Each ``CV/fold-<i>/best.pt`` is packaged by ``sonoseg.models.packaging`` (no optimiser or RNG state, weights
stored as ``--storage`` says: int8 with one scale per output channel by default, as v3 ships) into
``OUT/fold-<i>/best.pt``, beside copies of the fold's ``samples.json`` and ``summary.json``, so that
``sonoseg evaluate --cv OUT`` scores the weights that ship and ``sonoseg ensemble OUT/fold-*/best.pt`` builds
the ensemble from them. Why: five fp16 fold models of the v5 recipe make a 36 MB file, over issue 22's 25 MB
per tier; five int8-stored ones make ~19 MB (``docs/breast_v4/cv_rule.md``, addendum).

``--finished-only`` packages the folds that have finished and leaves the rest (a fold already packaged from the
same finished fold is kept as it is). With the run's ``cv_config.yaml`` and ``cv_folds.json``, which are always
copied, OUT is then a cross-validation run of its own: a copy of it continues on another machine with
``sonoseg train --folds K --resume COPY`` (how ``cv5`` outlives a session's machine; the addendum of 8 December).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from sonoseg.errors import ConfigError
from sonoseg.evaluate.out_of_fold import fold_dirs
from sonoseg.models.packaging import ShipOptions, ship_checkpoint
from sonoseg.train.kfold import CV_CONFIG, CV_FOLDS

FOLD_RECORDS = ("samples.json", "summary.json")


def _already_packaged(fold: Path, dst: Path) -> bool:
    return (dst / "best.pt").is_file() and all(
        (dst / n).is_file() and (dst / n).read_bytes() == (fold / n).read_bytes() for n in FOLD_RECORDS)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cv_dir", type=Path, help="a `sonoseg train --folds` run (finished, or see --finished-only)")
    ap.add_argument("out", type=Path, help="the packaged CV folder to write")
    ap.add_argument("--storage", choices=("int8", "fp16"), default="int8")
    ap.add_argument("--finished-only", action="store_true",
                    help="package the folds that finished; skip the rest and the folds packaged before")
    a = ap.parse_args(argv)
    try:
        folds = fold_dirs(a.cv_dir, finished_only=a.finished_only)  # without it, refuses an unfinished run
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    a.out.mkdir(parents=True, exist_ok=True)
    for name in (CV_CONFIG, CV_FOLDS):
        if (a.cv_dir / name).is_file():
            shutil.copy2(a.cv_dir / name, a.out / name)
    for fold in folds:
        dst = a.out / fold.name
        if a.finished_only and _already_packaged(fold, dst):
            print(f"{dst / 'best.pt'}: packaged before, kept")
            continue
        ship_checkpoint(fold / "best.pt", dst / "best.pt", ShipOptions(storage=a.storage))
        for name in FOLD_RECORDS:
            shutil.copy2(fold / name, dst / name)
        print(f"{dst / 'best.pt'}: {(dst / 'best.pt').stat().st_size / 1e6:.1f} MB, {a.storage} storage")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
