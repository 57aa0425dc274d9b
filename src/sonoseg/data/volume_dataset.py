"""PyTorch datasets for volumes, feeding the same trainer as 2D images.

Each case is read (sonoseg.io), its labels mapped to model classes and run through the deterministic
MONAI preprocessing once (:func:`sonoseg.preprocess.volume.base_transforms`); the model-grid arrays
are kept in memory (3 mm CT is small). Training items are random patches (RandCropByPosNegLabel) or,
with ``volume.slice_group``, seed 002's fixed slice groups (each cropped in-plane to ``patch_size``);
``len`` = cases x ``num_samples`` (or x groups), so ``data.batch_size`` means patches per step.
Validation items are whole preprocessed volumes (the trainer validates them with a sliding window).
Patch positions of epoch e come from (seed, e) alone (:meth:`set_epoch`), so resume is exact.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch.utils.data import Dataset

from sonoseg.data.layout import Sample
from sonoseg.preprocess.volume_config import VolumeConfig


class VolumeDataset(Dataset):
    """Items: ``{"image": float32 1xXxYxZ, "mask": int64 1xXxYxZ (classes 0..K), "stem", "index"}``."""

    def __init__(self, samples: Sequence[Sample], vcfg: VolumeConfig, train: bool = True, seed: int = 0):
        self.samples = list(samples)
        self.vcfg = vcfg
        self.train = train
        self.seed = int(seed)
        self._cases: list[Optional[tuple[torch.Tensor, torch.Tensor]]] = [None] * len(self.samples)
        self._groups: Optional[list[tuple[int, int]]] = None  # (case, first slice) in slice-group mode
        self.augment = None  # the trainer looks for this attribute
        self._patch = None

    # -- preprocessing -------------------------------------------------------------------------------------
    def case(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(image 1xXxYxZ float32, label 1xXxYxZ uint8) of case i on the model grid."""
        if self._cases[i] is None:
            from sonoseg.data.volumes import load_case
            from sonoseg.preprocess.volume import base_transforms, case_dict

            image, mask = load_case(self.samples[i], self.vcfg)
            d = base_transforms(self.vcfg)(case_dict(image, mask))
            self._cases[i] = (d["image"].as_tensor().float().contiguous(), d["label"].as_tensor().to(torch.uint8).contiguous())
        return self._cases[i]

    def preload(self, show_progress: bool = True) -> int:
        idx = range(len(self.samples))
        if show_progress:
            from sonoseg.progress import track

            idx = track(idx, "preprocessing volumes", total=len(self.samples))
        for i in idx:
            self.case(i)
        return len(self.samples)

    def _group_index(self) -> list[tuple[int, int]]:
        if self._groups is None:
            from sonoseg.preprocess.slice_groups import group_starts

            g = self.vcfg.slice_group
            self._groups = [(i, s) for i in range(len(self.samples))
                            for s in group_starts(self.case(i)[0].shape[-1], g.size, g.overlap)]
        return self._groups

    # -- sampling ------------------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        from sonoseg.system.seeding import epoch_seed

        self._patch_transform().set_random_state(seed=epoch_seed(self.seed, epoch, 0) % (2**32))

    def _patch_transform(self):
        if self._patch is None:
            from sonoseg.preprocess.volume import patch_transforms

            vc = self.vcfg
            if vc.slice_group is not None:  # in-plane crop of a whole group
                vc = vc.model_copy(update={"patch_size": (vc.patch_size[0], vc.patch_size[1], vc.slice_group.size)})
            self._patch = patch_transforms(vc, seed=self.seed)
        return self._patch

    def __len__(self) -> int:
        if not self.train:
            return len(self.samples)
        if self.vcfg.slice_group is not None:
            return len(self._group_index())
        return len(self.samples) * self.vcfg.num_samples

    def __getitem__(self, k: int) -> dict:
        if not self.train:
            img, lab = self.case(k)
            return {"image": img, "mask": lab.long(), "stem": self.samples[k].stem, "index": k}
        if self.vcfg.slice_group is not None:
            i, s = self._group_index()[k]
            size = self.vcfg.slice_group.size
            img, lab = self.case(i)
            img, lab = img[..., s: s + size], lab[..., s: s + size]
        else:
            i = k // self.vcfg.num_samples
            img, lab = self.case(i)
        out = self._patch_transform()({"image": img, "label": lab})
        out = out[0] if isinstance(out, list) else out
        image = torch.as_tensor(out["image"]).float()
        mask = torch.as_tensor(out["label"]).long()
        return {"image": image.contiguous(), "mask": mask.contiguous(), "stem": self.samples[i].stem, "index": i}
