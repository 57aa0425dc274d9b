"""Turn the config's data section into train/val datasets (split file or a fresh leakage-safe split)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from sonoseg.config import SonosegConfig
from sonoseg.errors import ConfigError


@dataclass
class SplitSamples:
    train: list
    val: list
    split_file: Path


def select_samples(cfg: SonosegConfig, run_dir: Path, folds: Optional[tuple[int, int]] = None) -> SplitSamples:
    """Samples for training and validation.

    - ``data.split_file`` given: its ``train_split``/``val_split`` rows;
    - otherwise a new grouped, duplicate-aware 70/15/15 split (seed = train.seed) written to the run;
    - ``folds=(k, i)``: k-fold CV over the train+val part (the test part stays untouched), fold i validates.
    """
    from sonoseg.data import discover_dataset, make_kfold, make_split, read_split_csv, write_split_csv

    if not cfg.data.root:
        raise ConfigError("data.root is not set (pass DATASET or --set data.root=...)")
    samples = [s for s in discover_dataset(cfg.data.root) if s.mask_path is not None]  # unlabelled images can't train
    if not samples:
        raise ConfigError(f"{cfg.data.root}: no image/mask pairs found")
    if cfg.data.split_file:
        split_path = Path(cfg.data.split_file)
        assignment = read_split_csv(split_path)
    else:
        result = make_split(samples, seed=cfg.train.seed)
        split_path = run_dir / "split.csv"
        write_split_csv(result, split_path)
        assignment = read_split_csv(split_path)
    missing = [s.stem for s in samples if s.stem not in assignment]
    if len(missing) == len(samples):
        raise ConfigError(f"{split_path}: no image of {cfg.data.root} is listed in the split file")
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
    return SplitSamples(train, val, split_path)
