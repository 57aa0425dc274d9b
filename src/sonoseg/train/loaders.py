"""The training and validation loaders of a run, and the per-epoch seeding that makes a resume exact:
shuffling and augmentation of epoch e are seeded from (seed, epoch, rank) alone."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler, WeightedRandomSampler
from torch.utils.data.distributed import DistributedSampler

from sonoseg.config import SonosegConfig
from sonoseg.errors import ConfigError
from sonoseg.system.seeding import epoch_seed
from sonoseg.train.distributed import DistContext


def reseed_augment(aug, seed: int) -> None:
    """Reseed the augmenter of the training set (ours or a bare albumentations Compose)."""
    if hasattr(aug, "reseed"):  # sonoseg.data.augment.Augmenter
        aug.reseed(seed)
    elif hasattr(aug, "set_random_seed"):  # a bare albumentations Compose
        aug.set_random_seed(seed)


def seed_epoch(cfg: SonosegConfig, epoch: int, rank: int, train_ds) -> int:
    """Seed Python, NumPy, torch and the augmenter for epoch ``epoch`` of rank ``rank``; returns the seed (the
    sampler's generator takes it too)."""
    s = epoch_seed(cfg.train.seed, epoch, rank)
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)
    if hasattr(train_ds, "set_epoch"):
        train_ds.set_epoch(epoch)
    aug = getattr(train_ds, "augment", None)
    if aug is not None:
        reseed_augment(aug, s)
    return s


def build_loaders(cfg: SonosegConfig, split, cache_dir: Path, ctx: DistContext, soft_targets=None):
    """(train set, val set, train loader, val loader, note): 2D sets over the preprocessed cache (a distillation
    teacher's soft targets beside the training images), a DDP shard per rank or the source-weighted sampler;
    volumes through :func:`sonoseg.train.volume_setup.volume_loaders`."""
    if cfg.is_3d:
        from sonoseg.train.volume_setup import volume_loaders

        return volume_loaders(cfg, split, ctx)
    from sonoseg.data import SegmentationDataset
    from sonoseg.data.augment import build_augmentation

    aug = build_augmentation(cfg.augment, seed=cfg.train.seed, fill=cfg.preprocess.pad_value) \
        if cfg.augment.enabled else None
    common = dict(preprocess_cfg=cfg.preprocess, cache_dir=cache_dir, classes=cfg.model.classes,
                  class_names=cfg.model.class_names() or None)
    train_ds = SegmentationDataset(split.train, augment=aug, soft_targets=soft_targets, **common)
    val_ds = SegmentationDataset(split.val, augment=None, **common)
    note = None
    if ctx.enabled:
        from sonoseg.train.distributed import plan_shards

        drop_last, note = plan_shards(len(train_ds), ctx.world_size, cfg.data.batch_size)
        sampler = DistributedSampler(train_ds, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                     seed=cfg.train.seed, drop_last=False)
    else:
        drop_last = len(train_ds) > cfg.data.batch_size
        sampler = train_sampler(split, train_ds)
    from sonoseg.data import seed_worker  # per-worker reseed of numpy/random/augmenter (derived from the epoch seed)

    kw = dict(num_workers=cfg.data.num_workers, persistent_workers=False, pin_memory=torch.cuda.is_available(),
              worker_init_fn=seed_worker if cfg.data.num_workers > 0 else None)
    train_dl = DataLoader(train_ds, batch_size=cfg.data.batch_size, sampler=sampler, drop_last=drop_last, **kw)
    val_dl = DataLoader(val_ds, batch_size=cfg.data.batch_size, sampler=SequentialSampler(val_ds), **kw)
    if len(train_dl) == 0:  # never run an epoch of zero optimiser steps and report loss 0
        raise ConfigError(f"no training batch: {len(train_ds)} training image(s) with batch size {cfg.data.batch_size}")
    return train_ds, val_ds, train_dl, val_dl, note


def sample_id(sample) -> str:
    """Stem, or ``source/stem`` in a multi-source run (two sources may both have a ``0001.png``)."""
    return f"{sample.source}/{sample.stem}" if sample.source else sample.stem


def train_sampler(split, train_ds):
    """Plain shuffling, or -- when the sources' weights differ -- draws with replacement where each
    image's chance is its source's weight (``len(train)`` draws per epoch). Both seeded per epoch."""
    weights = getattr(split, "weights", {}) or {}
    if len(set(weights.values())) <= 1:
        return RandomSampler(train_ds, generator=torch.Generator())
    per_image = [weights[s.source] for s in split.train]
    return WeightedRandomSampler(per_image, num_samples=len(per_image), replacement=True, generator=torch.Generator())
