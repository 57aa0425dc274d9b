"""Out-of-fold evaluation of a cross-validation run: every train+val image scored by the one fold model
that did not train on it, pooled per source (nnU-Net's way of judging a recipe on all its data).

Each fold's ``best.pt`` is evaluated by :func:`sonoseg.evaluate.run.evaluate_model` on its own val images
(read from the fold's ``samples.json``) into ``OUT/fold-<i>/<source>/``; the per-image tables are then
pooled into ``OUT/<source>/per_image.csv`` and ``per_image_class.csv`` (with a ``fold`` column; what
``scripts/choose_operating_point.py`` reads) and ``OUT/<source>/metrics.json``, and the sources side by
side into ``OUT/per_source.md`` / ``.json``, as ``sonoseg evaluate`` writes for one model."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from sonoseg.errors import ConfigError
from sonoseg.evaluate.aggregate import jsonable, aggregate
from sonoseg.evaluate.detection import detection_summary
from sonoseg.evaluate.options import EvaluateOptions
from sonoseg.evaluate.per_source import headline, write_per_source
from sonoseg.evaluate.run import evaluate_model
from sonoseg.metrics.classification import class_metrics

OOF_SPLIT = "oof"


def fold_dirs(cv_dir: str | Path, finished_only: bool = False) -> list[Path]:
    """The fold folders of a CV run, in fold order; all k of them (``cv_folds.json``) must have finished (best.pt,
    samples.json), or with ``finished_only`` those that have (a run still training)."""
    folds = sorted(Path(cv_dir).glob("fold-*"), key=lambda p: int(p.name.split("-")[1]))
    if finished_only:
        folds = [f for f in folds if (f / "summary.json").is_file()]
    if not folds:
        raise ConfigError(f"{cv_dir}: no {'finished ' if finished_only else ''}fold-<i> folders"
                          f"{'' if finished_only else ' (not a `sonoseg train --folds` run)'}")
    for f in folds:
        if not (f / "summary.json").is_file():
            raise ConfigError(f"{f}: fold not finished (no summary.json); resume the run with --folds --resume first")
    k_file = Path(cv_dir) / "cv_folds.json"  # a run's fold not begun has no folder: count them
    k = json.loads(k_file.read_text())["k"] if k_file.is_file() else None
    if not finished_only and k is not None and len(folds) != k:
        raise ConfigError(f"{cv_dir}: {len(folds)} of its {k} folds are there; "
                          f"resume the run with --folds {k} --resume first")
    return folds


def fold_val_stems(fold: Path, source: str, multi: bool) -> list[str]:
    """Stems of one source's images in this fold's val part (ids are ``source/stem`` in a multi-source run)."""
    ids = json.loads((fold / "samples.json").read_text())["val"]
    if not multi:
        return list(ids)
    return [i.split("/", 1)[1] for i in ids if i.split("/", 1)[0] == source]


def _pool(source_dirs: Sequence[Path], n_boot: int) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    def pooled(name: str) -> pd.DataFrame:  # one table of every fold's rows (stems stay strings: "0001")
        frames = [pd.read_csv(d / name, dtype={"stem": str}).assign(fold=k)
                  for k, d in enumerate(source_dirs) if (d / name).is_file()]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    per, cls = pooled("per_image.csv"), pooled("per_image_class.csv")
    agg = aggregate(per, n_boot=n_boot)
    decisions = dict(zip(cls["stem"], cls["lesion_found"].astype(bool))) if len(cls) else None
    det = detection_summary(per, decisions)
    cm = None
    if len(cls):
        names = [c[2:] for c in cls.columns if c.startswith("p_")]
        index = {n: i for i, n in enumerate(names)}
        labels = np.array([index.get(t, -1) for t in cls["true_class"]], dtype=int)
        cm = class_metrics(cls[[f"p_{n}" for n in names]].to_numpy(float), labels, names,
                           pair=("benign", "malignant"), n_boot=n_boot)
    summary = headline(len(per), agg, det, cm)
    return per, cls, {"aggregate": agg, "detection": det, "summary": summary}


def evaluate_out_of_fold(cv_dir: str | Path, datasets: Sequence[str | Path], options: EvaluateOptions,
                         log: Callable[[str], None] = print) -> dict[str, dict]:
    """Score every fold's best.pt on its own val images of each dataset, then pool per source; returns
    source -> summary (the keys of :func:`sonoseg.evaluate.per_source.source_summary`)."""
    folds = fold_dirs(cv_dir)
    out = Path(options.out_dir)
    multi = len(datasets) > 1
    summaries = {}
    for dataset in map(Path, datasets):
        source = dataset.name
        evaluated = []
        for fold in folds:
            stems = fold_val_stems(fold, source, multi)
            if not stems:
                continue
            where = out / fold.name / source
            where.mkdir(parents=True, exist_ok=True)
            split_csv = where / "oof_split.csv"
            with open(split_csv, "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["image", "split"])
                w.writerows([s, OOF_SPLIT] for s in stems)
            log(f"{fold.name}: {len(stems)} {source} images")
            evaluate_model(dataset, replace(options, model=fold / "best.pt", split_file=split_csv, split=OOF_SPLIT,
                                            out_dir=where, report=False), log=log)
            evaluated.append(where)
        if not evaluated:
            raise ConfigError(f"{cv_dir}: no fold validated on {source} images")
        per, cls, res = _pool(evaluated, options.n_boot)
        (out / source).mkdir(parents=True, exist_ok=True)
        per.to_csv(out / source / "per_image.csv", index=False)
        if len(cls):
            cls.to_csv(out / source / "per_image_class.csv", index=False)
        (out / source / "metrics.json").write_text(json.dumps(jsonable(
            {"out_of_fold": True, "folds": len(evaluated), **res}), indent=2) + "\n")
        summaries[source] = res["summary"]
    write_per_source(summaries, out, f"out of fold ({len(folds)} folds) per source")
    return summaries
