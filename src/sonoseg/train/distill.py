"""Knowledge distillation: a teacher's soft targets for every training image, and the loss that uses them.

Why offline targets: on a 2-core CPU a teacher forward per batch (an ensemble with flip TTA is four to
six networks) would cost more than the student's own step. The teacher therefore runs once over the
unaugmented training images at its own input size; its foreground probabilities are resized onto the
student's grid (both letterbox the same ROI into a square, so the maps line up to within a pixel) and
cached, keyed by the teacher file, the images and both preprocessings. During training the soft mask
travels with the image through the same geometric augmentation as the ground truth (intensity changes
leave it alone: the student should answer as the teacher did on the clean image). The class
probabilities are per image and unaffected by augmentation.

Binary masks only (a student with ``classes == 1``), with or without an image-level class head.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sonoseg.data.cache import atomic_save_npz, file_fingerprint, load_npz, stable_key
from sonoseg.errors import ConfigError
from sonoseg.models.padding import split_outputs

TARGETS_VERSION = "sonoseg-distill-v1"


@dataclass
class TeacherTargets:
    """Soft targets by training-set index: ``masks`` N x H x W (float16, the student's grid) and
    ``classes`` N x K (teacher probabilities in the student's class order) or None."""

    masks: np.ndarray
    classes: Optional[np.ndarray]

    def __call__(self, index: int) -> tuple[np.ndarray, Optional[np.ndarray]]:
        cls = None if self.classes is None else self.classes[index].astype(np.float32)
        return self.masks[index].astype(np.float32), cls


def _class_order(teacher_names: Sequence[str], student_names: Sequence[str], teacher: Path) -> Optional[list[int]]:
    """Indices into the teacher's classes in the student's order; None when either has no class head."""
    if not teacher_names or not student_names:
        return None
    if sorted(teacher_names) != sorted(student_names):
        raise ConfigError(f"{teacher}: teacher classes {list(teacher_names)} differ from the student's "
                          f"{list(student_names)}; a class head can only learn the same classes")
    return [list(teacher_names).index(n) for n in student_names]


def _check_teacher(tcfg, scfg, teacher: Path) -> None:
    if scfg.model.classes != 1 or tcfg.model.classes != 1:
        raise ConfigError(f"{teacher}: distillation supports binary masks (model.classes 1) only")
    t = tcfg.preprocess.model_dump(exclude={"size"})
    s = scfg.preprocess.model_dump(exclude={"size"})
    diff = sorted(k for k in t if t[k] != s.get(k))
    if diff or tcfg.preprocess.resize_mode != "letterbox":
        raise ConfigError(f"{teacher}: teacher preprocessing differs from the student's ({', '.join(diff) or 'resize_mode'}); "
                          "only the input size may differ, with letterbox resizing")


def _targets_key(teacher: Path, samples, tcfg, scfg, tta: bool) -> str:
    files = [(file_fingerprint(s.image_path), file_fingerprint(s.mask_path)) for s in samples]
    return stable_key(TARGETS_VERSION, file_fingerprint(teacher), files, tcfg.preprocess.model_dump_json(),
                      scfg.preprocess.model_dump_json(), scfg.model.class_names(), tta)


@torch.no_grad()
def _run_teacher(model, images: np.ndarray, in_channels: int, tta: bool, temperature: float):
    x = torch.from_numpy(images[:, None]).float()
    if in_channels > 1:
        x = x.repeat(1, in_channels, 1, 1)
    views = [(x, False), (torch.flip(x, (-1,)), True)] if tta else [(x, False)]
    mask, cls = 0.0, None
    for v, flipped in views:
        m, c = split_outputs(model(v))
        p = torch.sigmoid(m.float())
        mask = mask + (torch.flip(p, (-1,)) if flipped else p)
        if c is not None:
            q = torch.softmax(c.float() / temperature, 1)
            cls = q if cls is None else cls + q
    n = len(views)
    return (mask / n)[:, 0].numpy(), (None if cls is None else (cls / n).numpy())


def teacher_targets(teacher: str | Path, samples, student_cfg, cache_dir: Path, *, tta: bool = True,
                    compute: bool = True, log: Callable[[str], None] = print, batch: int = 8) -> TeacherTargets:
    """The teacher's soft targets for ``samples`` on the student's grid, from the cache or computed.

    ``compute=False`` only reads the cache (DDP ranks other than 0, after rank 0 computed it)."""
    from sonoseg.data import SegmentationDataset
    from sonoseg.models.checkpoint import checkpoint_config, load_checkpoint, load_model

    teacher = Path(teacher)
    tcfg = checkpoint_config(load_checkpoint(teacher))  # the network itself is built only on a cache miss
    _check_teacher(tcfg, student_cfg, teacher)
    order = _class_order(tcfg.model.class_names(), student_cfg.model.class_names(), teacher)
    path = Path(cache_dir) / f"distill-{_targets_key(teacher, samples, tcfg, student_cfg, tta)}.npz"
    hit = load_npz(path)
    if hit is not None and "masks" in hit:
        return TeacherTargets(hit["masks"], hit.get("classes") if order is not None else None)
    if not compute:
        raise ConfigError(f"{path}: the teacher's targets are missing from the cache")
    model, _ = load_model(teacher)
    size = tuple(int(v) for v in student_cfg.preprocess.size)
    ds = SegmentationDataset(samples, tcfg.preprocess, cache_dir=cache_dir)  # the teacher's own grids
    head = tcfg.model.classification
    temperature = float(head.temperature) if head is not None else 1.0
    from sonoseg.progress import track

    masks = np.zeros((len(ds),) + size, np.float16)
    classes = np.zeros((len(ds), len(order)), np.float32) if order is not None else None
    starts = range(0, len(ds), batch)
    log(f"distillation: teacher {teacher.name} on {len(ds)} training images"
        f"{' with flip TTA' if tta else ''} -> soft targets on the {size[0]}x{size[1]} grid")
    for start in track(starts, "teacher targets", total=len(starts)):
        idx = list(range(start, min(start + batch, len(ds))))
        images = np.stack([ds.arrays(i)[0] for i in idx])
        prob, cls = _run_teacher(model, images, tcfg.model.in_channels, tta, temperature)
        for j, i in enumerate(idx):
            masks[i] = cv2.resize(prob[j], (size[1], size[0]), interpolation=cv2.INTER_AREA)
            if classes is not None and cls is not None:
                classes[i] = cls[j][order]
    arrays = {"masks": masks} if classes is None else {"masks": masks, "classes": classes}
    try:
        atomic_save_npz(path, **arrays)
    except OSError:
        pass  # read-only cache: the targets stay in memory for this run
    return TeacherTargets(masks, classes)


class DistillLoss(nn.Module):
    """``(1 - weight) * base + weight * soft``; soft = 0.5 BCE + 0.5 soft Dice against the teacher's
    mask probabilities, plus ``class_weight`` x the cross-entropy against its class probabilities.
    Batches without soft targets (validation) get the base loss alone."""

    distill = True

    def __init__(self, base: nn.Module, weight: float, class_weight: float = 0.5):
        super().__init__()
        self.base, self.weight, self.class_weight = base, float(weight), float(class_weight)
        self.joint = False  # the trainer's loop passes the whole batch (see train.loop._loss)

    def _hard(self, outputs, target, cls):
        if getattr(self.base, "joint", False):
            return self.base(outputs, target, cls)
        return self.base(split_outputs(outputs)[0], target)

    def forward(self, outputs, target: torch.Tensor, batch: dict, device) -> torch.Tensor:
        cls = batch.get("cls")
        hard = self._hard(outputs, target, None if cls is None else cls.to(device))
        soft_mask = batch.get("soft_mask")
        if soft_mask is None or self.weight == 0:
            return hard
        logits, class_logits = split_outputs(outputs)
        t = soft_mask.to(device).float()
        z = logits.float()
        bce = F.binary_cross_entropy_with_logits(z, t)
        p = torch.sigmoid(z).flatten(1)
        tf = t.flatten(1)
        dice = 1.0 - ((2.0 * (p * tf).sum(1) + 1.0) / (p.sum(1) + tf.sum(1) + 1.0)).mean()
        soft = 0.5 * bce + 0.5 * dice
        soft_cls = batch.get("soft_cls")
        if class_logits is not None and soft_cls is not None and self.class_weight > 0:
            q = soft_cls.to(device).float()
            soft = soft + self.class_weight * -(q * torch.log_softmax(class_logits.float(), 1)).sum(1).mean()
        return (1.0 - self.weight) * hard + self.weight * soft
