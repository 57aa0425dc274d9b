"""Distillation (issue 22's `fast` tier): the teacher's soft targets, their augmentation, the loss, the trainer."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sonoseg.config import SonosegConfig, load_config
from sonoseg.errors import ConfigError


@pytest.fixture(scope="module")
def phantom_ds(tmp_path_factory) -> Path:
    from sonoseg.data.phantom import write_phantom_dataset

    return write_phantom_dataset(tmp_path_factory.mktemp("ph") / "ds", n=12, size=(80, 64), seed=3)


def _teacher(path: Path, names=("benign", "malignant"), size=64, seed=0, **pre) -> Path:
    from sonoseg.models import create_model_from_config
    from sonoseg.models.checkpoint import save_checkpoint

    cfg = SonosegConfig.model_validate({
        "preprocess": {"size": [size, size], **pre},
        "model": {"name": "fpn", "encoder": "resnet18",
                  "params": {"decoder_pyramid_channels": 32, "decoder_segmentation_channels": 32},
                  "classification": {"names": list(names), "temperature": 1.5}},
    })
    torch.manual_seed(seed)
    model = create_model_from_config(cfg.model, pretrained=False)
    return save_checkpoint(path, config=cfg, model_state=model.state_dict(), epoch=1, best_score=0.5)


def _student_cfg(root: Path, tmp: Path, *extra: str):
    return load_config(None, [
        f"data.root={root}", f"data.cache_dir={tmp / 'cache'}", "data.batch_size=4", "model.name=unet",
        "model.params={base_channels: 8, depth: 2}", "preprocess.size=[48, 48]", "train.epochs=1",
        "train.threads=1", "train.lr=0.01", "train.scheduler=none", "augment.enabled=false", *extra])


def _samples(root: Path):
    from sonoseg.data import discover_dataset

    return discover_dataset(root)


def test_teacher_targets_are_its_own_forward_resized_to_the_student_grid(phantom_ds, tmp_path):
    from sonoseg.data import SegmentationDataset
    from sonoseg.models.checkpoint import load_model
    from sonoseg.train.distill import teacher_targets

    teacher = _teacher(tmp_path / "t.pt")
    samples = _samples(phantom_ds)[:5]
    student = _student_cfg(phantom_ds, tmp_path, "model.name=fpn", "model.encoder=resnet18",
                           "model.classification={names: [malignant, benign]}")  # the other class order
    for tta in (False, True):
        got = teacher_targets(teacher, samples, student, tmp_path / "cache", tta=tta, log=lambda m: None)
        model, tcfg = load_model(teacher)
        ds = SegmentationDataset(samples, tcfg.preprocess)
        assert got.masks.shape == (5, 48, 48) and got.classes.shape == (5, 2)
        for i in range(5):
            x = torch.from_numpy(ds.arrays(i)[0])[None, None]
            with torch.no_grad():
                m, c = model(x)
                p, q = torch.sigmoid(m)[0, 0].numpy(), torch.softmax(c / 1.5, 1)[0].numpy()
                if tta:
                    mf, cf = model(torch.flip(x, (-1,)))
                    p = (p + torch.sigmoid(mf)[0, 0].numpy()[:, ::-1]) / 2
                    q = (q + torch.softmax(cf / 1.5, 1)[0].numpy()) / 2
            expected = cv2.resize(np.ascontiguousarray(p), (48, 48), interpolation=cv2.INTER_AREA)
            soft, cls = got(i)
            assert np.abs(soft - expected).max() < 2e-3  # float16 storage
            assert np.allclose(cls, q[::-1], atol=1e-5)  # student order: malignant, benign
    # a second call reads the cache instead of running the teacher
    assert len(list((tmp_path / "cache").glob("distill-*.npz"))) == 2
    cached = teacher_targets(teacher, samples, student, tmp_path / "cache", tta=True, compute=False)
    assert np.array_equal(cached.masks, got.masks)


def test_teacher_with_other_preprocessing_or_classes_is_refused(phantom_ds, tmp_path):
    from sonoseg.train.distill import teacher_targets

    samples = _samples(phantom_ds)[:2]
    student = _student_cfg(phantom_ds, tmp_path, "model.name=fpn", "model.encoder=resnet18",
                           "model.classification={names: [benign, malignant]}")
    other = _teacher(tmp_path / "clahe.pt", clahe=not student.preprocess.clahe)
    with pytest.raises(ConfigError, match=r"clahe\.pt: teacher preprocessing differs .*clahe"):
        teacher_targets(other, samples, student, tmp_path / "cache", log=lambda m: None)
    three = _teacher(tmp_path / "three.pt", names=("benign", "malignant", "normal"))
    with pytest.raises(ConfigError, match=r"three\.pt: teacher classes"):
        teacher_targets(three, samples, student, tmp_path / "cache", log=lambda m: None)


def test_soft_mask_moves_with_the_image_under_augmentation(phantom_ds):
    from sonoseg.config import AugmentConfig
    from sonoseg.data import SegmentationDataset
    from sonoseg.data.augment import build_augmentation
    from sonoseg.preprocess.config import PreprocessConfig

    samples = _samples(phantom_ds)[:4]
    pre = PreprocessConfig(size=(48, 48))
    plain = SegmentationDataset(samples, pre)
    # soft target = the ground truth itself: after one shared warp they must still be equal
    truth = {i: plain[i]["mask"][0].numpy() for i in range(4)}
    aug = build_augmentation(AugmentConfig(enabled=True, hflip=0.5, affine_p=1.0, rotate_limit=30, shift_limit=0.2,
                                           brightness_contrast_p=0.0, gamma_p=0.0, speckle_p=0.0, blur_p=0.0), seed=1)
    ds = SegmentationDataset(samples, pre, augment=aug, soft_targets=lambda i: (truth[i], np.array([0.3, 0.7])))
    moved = 0
    for i in range(4):
        item = ds[i]
        assert torch.equal(item["soft_mask"], item["mask"])
        assert torch.allclose(item["soft_cls"], torch.tensor([0.3, 0.7]))
        moved += int(not np.array_equal(item["mask"][0].numpy(), truth[i]))
    assert moved >= 3  # the augmentation really warped them


def test_distill_loss_is_the_mix_of_ground_truth_and_teacher_terms():
    import torch.nn.functional as F

    from sonoseg.train.distill import DistillLoss
    from sonoseg.train.losses import build_loss

    torch.manual_seed(0)
    z, c = torch.randn(2, 1, 8, 8), torch.randn(2, 3)
    y = (torch.rand(2, 1, 8, 8) > 0.5).float()
    t, q = torch.rand(2, 1, 8, 8), torch.softmax(torch.randn(2, 3), 1)
    base = build_loss("dice_bce", classes=1)
    loss = DistillLoss(base, weight=0.3, class_weight=0.5)
    got = loss((z, c), y, {"soft_mask": t, "soft_cls": q}, torch.device("cpu"))
    p = torch.sigmoid(z)
    dice = 1 - ((2 * (p * t).sum((1, 2, 3)) + 1) / (p.sum((1, 2, 3)) + t.sum((1, 2, 3)) + 1)).mean()
    soft = 0.5 * F.binary_cross_entropy(p, t) + 0.5 * dice - 0.5 * (q * torch.log_softmax(c, 1)).sum(1).mean()
    assert torch.allclose(got, 0.7 * base(z, y) + 0.3 * soft, atol=1e-5)
    # validation batches carry no soft targets: the ground-truth loss alone
    assert torch.allclose(loss((z, c), y, {}, torch.device("cpu")), base(z, y))


@pytest.mark.slow  # two short trainings
def test_trainer_distils_a_smaller_student_from_a_teacher(phantom_ds, tmp_path):
    from sonoseg.models.checkpoint import load_checkpoint
    from sonoseg.train.trainer import train

    quiet = dict(log=lambda m: None, show_progress=False)
    teacher = train(_student_cfg(phantom_ds, tmp_path, "preprocess.size=[64, 64]"), out=tmp_path / "runs",
                    name="teacher", **quiet)
    lines: list[str] = []
    student = train(_student_cfg(phantom_ds, tmp_path, f"train.distill.teacher={teacher.best_checkpoint}",
                                 "train.distill.weight=0.7", "augment.enabled=true"),
                    out=tmp_path / "runs", name="student", log=lines.append, show_progress=False)
    assert any("distillation from" in s and "0.30 x ground truth + 0.70 x teacher" in s for s in lines)
    assert any("soft targets on the 48x48 grid" in s for s in lines)
    assert list((tmp_path / "cache").glob("distill-*.npz"))
    ck = load_checkpoint(student.best_checkpoint)
    assert ck["config"]["train"]["distill"]["teacher"] == str(teacher.best_checkpoint)
    assert ck["config"]["preprocess"]["size"] == [48, 48]
