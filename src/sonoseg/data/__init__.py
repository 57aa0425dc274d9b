"""Datasets: folder layout, validation, near-duplicate-aware splits, and the cached PyTorch dataset.

The torch dataset is imported lazily so that ``sonoseg split`` / ``validate`` do not load torch.
"""

from __future__ import annotations

from sonoseg.data.cache import default_cache_dir
from sonoseg.data.dedup import DEFAULT_DUP_THRESHOLD, find_duplicate_groups, image_hashes
from sonoseg.data.layout import Sample, discover_dataset, load_mask, read_labels
from sonoseg.data.split import (
    SplitResult,
    SplitRow,
    make_kfold,
    make_split,
    read_split_csv,
    select_split,
    write_split_csv,
)
from sonoseg.data.validate import Problem, ValidationReport, validate_dataset

_LAZY = {"SegmentationDataset", "make_loader", "seed_worker"}

__all__ = [
    "DEFAULT_DUP_THRESHOLD",
    "Problem",
    "Sample",
    "SplitResult",
    "SplitRow",
    "ValidationReport",
    "default_cache_dir",
    "discover_dataset",
    "find_duplicate_groups",
    "image_hashes",
    "load_mask",
    "make_kfold",
    "make_split",
    "read_labels",
    "read_split_csv",
    "select_split",
    "validate_dataset",
    "write_split_csv",
    *sorted(_LAZY),
]


def __getattr__(name: str):
    if name in _LAZY:
        from sonoseg.data import torch_dataset

        return getattr(torch_dataset, name)
    raise AttributeError(f"module 'sonoseg.data' has no attribute {name!r}")
