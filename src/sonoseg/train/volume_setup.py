"""What the trainer does differently for a 3D config (``cfg.volume`` set): volume cases instead of
images, patch datasets, whole-volume validation through the sliding window. The loop, optimiser,
scheduler, checkpointing, resume and DDP are the 2D trainer's own."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Callable, Optional

from sonoseg.config import SonosegConfig
from sonoseg.errors import ConfigError


def resolve_volume_config(cfg: SonosegConfig, log: Callable[[str], None]) -> None:
    """Organ names from the dataset's labels.json/CSV when the config names none; ``model.classes`` =
    organs + background (set when left at its default 1, ConfigError when it disagrees)."""
    from sonoseg.data.volumes import read_class_names

    v = cfg.volume
    if not v.labels:
        v.labels = read_class_names(cfg.data.root)
        if not v.labels:
            raise ConfigError(f"{cfg.data.root}: no labels.json/labels.csv and no volume.labels in the config")
        log(f"organs from the dataset's label file: {len(v.labels)}")
    k = len(v.labels) + 1
    if cfg.model.classes == 1:
        cfg.model.classes = k
    elif cfg.model.classes != k:
        raise ConfigError(f"model.classes={cfg.model.classes} but volume.labels names {k - 1} organs (+ background = {k})")
    cfg.model.params.setdefault("spatial_dims", 3)


def select_volume_samples(cfg: SonosegConfig, run_dir: Path):
    """Train/val cases: the split file's rows when given; else a seeded 80/20 split of the cases, or
    every case for both when there are fewer than 3 (fitting one volume; said in the log)."""
    from sonoseg.data import read_split_csv
    from sonoseg.data.volumes import discover_volumes
    from sonoseg.train.data_setup import SplitSamples

    if not cfg.data.root:
        raise ConfigError("data.root is not set (pass DATASET or --set data.root=...)")
    cases = [s for s in discover_volumes(cfg.data.root) if s.mask_path is not None]
    if not cases:
        raise ConfigError(f"{cfg.data.root}: no volume/mask pairs found")
    split_path = run_dir / "split.csv"
    if cfg.data.split_file:
        split_path = Path(cfg.data.split_file)
        a = read_split_csv(split_path)
        train = [s for s in cases if a.get(s.stem) == cfg.data.train_split]
        val = [s for s in cases if a.get(s.stem) == cfg.data.val_split]
    elif len(cases) < 3:
        train = val = cases
    else:
        order = list(range(len(cases)))
        random.Random(cfg.train.seed).shuffle(order)
        n_val = max(1, round(0.2 * len(cases)))
        val_idx = set(order[:n_val])
        train = [s for i, s in enumerate(cases) if i not in val_idx]
        val = [s for i, s in enumerate(cases) if i in val_idx]
    if not cfg.data.split_file:
        split_path.parent.mkdir(parents=True, exist_ok=True)
        rows = [f"{s.stem},train" for s in train] + [f"{s.stem},val" for s in val if s not in train]
        split_path.write_text("stem,split\n" + "\n".join(rows) + "\n")
    if not train or not val:
        raise ConfigError(f"{split_path}: empty {'train' if not train else 'val'} split")
    return SplitSamples(train, val, split_path)


def volume_loaders(cfg: SonosegConfig, split, ctx):
    from torch.utils.data import DataLoader, RandomSampler, SequentialSampler
    from torch.utils.data.distributed import DistributedSampler

    import torch

    from sonoseg.data.volume_dataset import VolumeDataset

    train_ds = VolumeDataset(split.train, cfg.volume, train=True, seed=cfg.train.seed)
    val_ds = VolumeDataset(split.val, cfg.volume, train=False, seed=cfg.train.seed)
    if ctx.enabled:
        sampler = DistributedSampler(train_ds, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                     seed=cfg.train.seed, drop_last=False)
    else:
        sampler = RandomSampler(train_ds, generator=torch.Generator())
    train_dl = DataLoader(train_ds, batch_size=cfg.data.batch_size, sampler=sampler, num_workers=0)
    val_dl = DataLoader(val_ds, batch_size=1, sampler=SequentialSampler(val_ds), num_workers=0)  # sizes differ
    return train_ds, val_ds, train_dl, val_dl, None


def sliding_forward(model, cfg: SonosegConfig) -> Optional[Callable]:
    """Validation forward for 3D: the same sliding window as inference (None for 2D configs)."""
    if cfg.volume is None:
        return None
    from sonoseg.models.sliding_window import sliding_window

    return lambda x: sliding_window(cfg.volume, model, x)
