"""Turn the config's data section into train/val datasets (split file or a fresh leakage-safe split).

Several sources (``data.sources``) are each split on their own (their own split file, or a fresh
grouped split per source), so a patient never crosses splits and each source keeps its test part;
their samples carry ``source`` so that validation can be reported per source.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from sonoseg.config import DataSource, SonosegConfig
from sonoseg.errors import ConfigError


@dataclass
class SplitSamples:
    train: list
    val: list
    split_file: Path  # the first source's split file (all of them: split_files)
    split_files: dict = dataclasses.field(default_factory=dict)  # source label -> split file
    weights: dict = dataclasses.field(default_factory=dict)  # source label -> sampling weight

    @property
    def sources(self) -> list[str]:
        return list(self.split_files)


def _source_split(src: DataSource, cfg: SonosegConfig, run_dir: Path, folds: Optional[tuple[int, int]],
                  label: str, many: bool) -> tuple[list, list, Path]:
    from sonoseg.data import discover_dataset, make_kfold, make_split, read_split_csv, write_split_csv

    samples = [s for s in discover_dataset(src.root) if s.mask_path is not None]  # unlabelled images can't train
    if not samples:
        raise ConfigError(f"{src.root}: no image/mask pairs found")
    if src.split_file:
        split_path = Path(src.split_file)
        assignment = read_split_csv(split_path)
    else:
        result = make_split(samples, seed=cfg.train.seed)
        split_path = run_dir / (f"split_{label}.csv" if many else "split.csv")
        write_split_csv(result, split_path)
        assignment = read_split_csv(split_path)
    if all(s.stem not in assignment for s in samples):
        raise ConfigError(f"{split_path}: no image of {src.root} is listed in the split file")
    samples = [dataclasses.replace(s, source=label) for s in samples] if many else samples
    if folds is None:
        train = [s for s in samples if assignment.get(s.stem) == cfg.data.train_split]
        val = [s for s in samples if assignment.get(s.stem) == cfg.data.val_split]
    else:
        k, i = folds
        pool = [s for s in samples if assignment.get(s.stem) in (cfg.data.train_split, cfg.data.val_split)]
        fold_of = make_kfold(pool, k=k, seed=cfg.train.seed)
        train = [s for s, f in zip(pool, fold_of) if f != i]
        val = [s for s, f in zip(pool, fold_of) if f == i]
    if not train:
        raise ConfigError(f"{split_path}: split {cfg.data.train_split!r} is empty")
    if not val:
        raise ConfigError(f"{split_path}: split {cfg.data.val_split!r} is empty")
    return train, val, split_path


def select_samples(cfg: SonosegConfig, run_dir: Path, folds: Optional[tuple[int, int]] = None) -> SplitSamples:
    """Samples for training and validation, over every source of ``data``.

    - a source's ``split_file`` given: its ``train_split``/``val_split`` rows;
    - otherwise a new grouped, duplicate-aware 70/15/15 split (seed = train.seed) written to the run;
    - ``folds=(k, i)``: k-fold CV over the train+val part (the test part stays untouched), fold i validates.
    """
    sources = cfg.data.source_list()
    if not sources:
        raise ConfigError("data.root is not set (pass DATASET or --set data.root=...)")
    labels = [s.label() for s in sources]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"data.sources: two sources share the name {sorted(set(x for x in labels if labels.count(x) > 1))[0]!r}"
                          " (give them distinct `name`s)")
    many = len(sources) > 1
    out = SplitSamples([], [], Path())
    for src, label in zip(sources, labels):
        train, val, path = _source_split(src, cfg, run_dir, folds, label, many)
        out.train += train
        out.val += val
        out.split_files[label] = path
        out.weights[label] = src.weight
    out.split_file = next(iter(out.split_files.values()))
    return out
