"""PyTorch dataset over :class:`Sample` lists, with a disk cache of the preprocessed arrays.

Decoding, the median filter and CLAHE dominate the per-sample cost and do not change between epochs,
so the grid image (float32) and grid label map are stored once as ``<cache_dir>/<key>.npz``. The key
hashes image and mask (resolved path, size, mtime) and the PreprocessConfig JSON: editing a file or
any preprocessing setting gives a new key, never a stale array. Augmentation runs after the cache.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from sonoseg.data.cache import atomic_save_npz, file_fingerprint, load_npz, stable_key
from sonoseg.data.layout import Sample, image_shape, labels_for_classes, to_label_map
from sonoseg.errors import ConfigError, InputError
from sonoseg.io import load_image
from sonoseg.preprocess import preprocess_image, preprocess_mask
from sonoseg.preprocess.config import PreprocessConfig

CACHE_VERSION = "sonoseg-data-v1"

Augment = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
# index -> (soft mask on the grid HxW float32, class probabilities K or None): a teacher's outputs
# (sonoseg.train.distill), moved with the image by the same geometric augmentation as the mask
SoftTargets = Callable[[int], tuple[np.ndarray, Optional[np.ndarray]]]


def _compute(sample: Sample, cfg: PreprocessConfig) -> tuple[np.ndarray, np.ndarray]:
    """Decode + preprocess one image and move its mask onto the same grid (raw label values kept)."""
    loaded = load_image(sample.image_path)
    shape = image_shape(loaded.pixels, loaded.meta)
    loaded_mask = load_image(sample.mask_path)
    mask = to_label_map(loaded_mask.pixels, sample.mask_path, shape, loaded_mask.meta.format)
    if mask.shape != shape:
        raise InputError(sample.mask_path, f"mask is {mask.shape[0]}x{mask.shape[1]}, image is {shape[0]}x{shape[1]}")
    if mask.dtype.kind == "f":
        raise InputError(sample.mask_path, "mask has non-integer values (run sonoseg validate)")
    pre = preprocess_image(loaded.pixels, cfg, meta=loaded.meta)
    grid_mask = preprocess_mask(mask, pre.transform)
    return np.ascontiguousarray(pre.image, dtype=np.float32), np.ascontiguousarray(grid_mask)


IGNORE_CLASS = -100  # class index of an image without a (known) class: ignored by the class loss


class SegmentationDataset(Dataset):
    """Items: ``{"image": float32 1xHxW, "mask": float32 1xHxW in {0,1} (classes == 1) or int64 HxW
    (classes > 1), "cls": int64 class index (``IGNORE_CLASS`` when unknown or no class_names),
    "stem": str, "index": int}``.

    ``augment(image, mask) -> (image, mask)`` receives float32 HxW and an integer label map HxW
    (0/1 for binary). ``cache_dir=None`` disables the disk cache (every access recomputes).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        preprocess_cfg: PreprocessConfig,
        augment: Optional[Augment] = None,
        cache_dir: Optional[str | Path] = None,
        classes: int = 1,
        class_names: Optional[Sequence[str]] = None,
        soft_targets: Optional[SoftTargets] = None,
    ):
        if classes < 1:
            raise ConfigError(f"classes must be >= 1, got {classes}")
        missing = [s for s in samples if s.mask_path is None]
        if missing:
            raise InputError(missing[0].image_path, f"no mask for {missing[0].stem!r} ({len(missing)} images without masks)")
        self.samples = list(samples)
        self.cfg = preprocess_cfg
        self.augment = augment
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.classes = classes
        index = {n: i for i, n in enumerate(class_names or [])}
        self.class_index = [index.get(s.cls, IGNORE_CLASS) if s.cls is not None else IGNORE_CLASS for s in self.samples]
        self._cfg_json = preprocess_cfg.model_dump_json()
        self.soft_targets = soft_targets
        if soft_targets is not None and classes != 1:
            raise ConfigError("soft targets (distillation) need a binary mask (classes 1)")

    def __len__(self) -> int:
        return len(self.samples)

    def cache_key(self, index: int) -> str:
        s = self.samples[index]
        return stable_key(CACHE_VERSION, file_fingerprint(s.image_path), file_fingerprint(s.mask_path), self._cfg_json)

    def cache_path(self, index: int) -> Optional[Path]:
        return None if self.cache_dir is None else self.cache_dir / f"{self.cache_key(index)}.npz"

    def arrays(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(grid image float32 HxW, grid label map HxW with the mask file's values), cached."""
        path = self.cache_path(index)
        if path is not None:
            hit = load_npz(path)
            if hit is not None and "image" in hit and "mask" in hit:
                return hit["image"], hit["mask"]
        image, mask = _compute(self.samples[index], self.cfg)
        if path is not None:
            try:
                atomic_save_npz(path, image=image, mask=mask)
            except OSError:
                pass  # read-only or full cache: train on, just slower
        return image, mask

    def __getitem__(self, index: int) -> dict:
        image, mask = self.arrays(index)
        labels = labels_for_classes(mask, self.classes, self.samples[index].mask_path)
        soft = soft_cls = None
        if self.soft_targets is not None:
            soft, soft_cls = self.soft_targets(index)
            if soft.shape != labels.shape:
                raise ConfigError(f"soft target of {self.samples[index].stem!r} is {soft.shape}, the grid {labels.shape}")
        if self.augment is not None and soft is not None:  # one warp for both: they stay aligned
            both = np.dstack([labels.astype(np.float32), soft.astype(np.float32)])
            image, both = self.augment(image, both)
            labels, soft = both[..., 0].astype(labels.dtype), both[..., 1]
        elif self.augment is not None:
            image, labels = self.augment(image, labels)
        image_t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
        if self.classes == 1:
            mask_t = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.float32))[None]
        else:
            mask_t = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))
        item = {"image": image_t, "mask": mask_t, "cls": torch.tensor(self.class_index[index], dtype=torch.int64),
                "stem": self.samples[index].stem, "index": index}
        if soft is not None:
            item["soft_mask"] = torch.from_numpy(np.ascontiguousarray(soft, dtype=np.float32))[None]
            if soft_cls is not None:
                item["soft_cls"] = torch.from_numpy(np.ascontiguousarray(soft_cls, dtype=np.float32))
        return item

    def preload(self, show_progress: bool = True) -> int:
        """Fill the disk cache for every sample; returns how many were computed (not already cached).
        Without a cache_dir there is nothing to fill: returns 0."""
        if self.cache_dir is None:
            return 0
        from sonoseg.progress import track

        computed = 0
        indices = range(len(self))
        for i in track(indices, "preprocessing", total=len(self)) if show_progress else indices:
            path = self.cache_path(i)
            if path is not None and path.is_file():
                continue  # writes are atomic; a damaged entry is recomputed by arrays()
            self.arrays(i)
            computed += 1
        return computed


def seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: numpy, random and the dataset's augmenter (albumentations keeps its
    own generator, which forked workers would otherwise share) are seeded from this worker's torch
    seed, so workers differ from each other yet repeat for the same loader seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    info = torch.utils.data.get_worker_info()
    ds = info.dataset if info is not None else None
    while ds is not None:  # unwrap Subset / ConcatDataset-like wrappers with a .dataset
        aug = getattr(ds, "augment", None)
        if aug is not None and hasattr(aug, "reseed"):
            aug.reseed(seed)
            break
        ds = getattr(ds, "dataset", None)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    sampler: Optional[Sampler] = None,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader with a seeded generator (same order for the same seed) and seeded workers."""
    g = torch.Generator()
    g.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        worker_init_fn=seed_worker if num_workers > 0 else None,
        generator=g,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
    )
