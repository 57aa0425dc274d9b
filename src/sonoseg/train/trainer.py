"""``train(cfg)``: the training run. Orchestrates the small parts in this package; the maths lives
in loop.py, losses.py and optim.py, persistence in checkpoint.py and history.py.

Resume is exact: shuffling, augmentation and dropout of epoch e are seeded from (seed, epoch) alone,
and model/optimiser/scheduler/scaler/RNG states and the best score come back from ``last.pt``.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler, WeightedRandomSampler
from torch.utils.data.distributed import DistributedSampler

from sonoseg._compat.legacy_kwargs import options_with_legacy
from sonoseg.config import SonosegConfig, save_config
from sonoseg.errors import ConfigError
from sonoseg.metrics.classification import quick_scores
from sonoseg.train import history
from sonoseg.models.checkpoint import checkpoint_config, load_checkpoint, save_checkpoint
from sonoseg.train.data_setup import select_samples
from sonoseg.train.device import select_device
from sonoseg.train.distributed import DistContext, barrier, broadcast_float, cleanup, init_distributed, validation_threads
from sonoseg.train.loop import train_one_epoch, validate
from sonoseg.train.optim import build_optimizer, build_scheduler, current_lr, restore_scheduler, step_scheduler
from sonoseg.system.seeding import capture_rng_state, epoch_seed, restore_rng_state, seed_everything
from sonoseg.train.options import RunOptions


@dataclass
class TrainResult:
    run_dir: str
    best_checkpoint: str
    last_checkpoint: str
    best_dice: float  # the best monitored val score: val Dice, or mean(val Dice, bacc) with a class head
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    history_csv: str
    curves_png: Optional[str]
    seconds: float
    monitor: str = "val Dice"  # what best_dice measures


PLOT_EVERY_S = 60.0  # curves.png is redrawn at most this often (matplotlib costs ~1 s), and at the end


def new_run_dir(parent: str | Path, name: Optional[str] = None) -> Path:
    """A fresh run directory; an existing one is never reused silently (a numeric suffix is added)."""
    parent = Path(parent)
    base = name or time.strftime("run-%Y%m%d-%H%M%S")
    cand, i = parent / base, 1
    while cand.exists() and any(cand.iterdir()):
        cand = parent / f"{base}-{i}"
        i += 1
    cand.mkdir(parents=True, exist_ok=True)
    return cand


def _reseed_augment(aug, seed: int) -> None:
    if hasattr(aug, "reseed"):  # sonoseg.data.augment.Augmenter
        aug.reseed(seed)
    elif hasattr(aug, "set_random_seed"):  # a bare albumentations Compose
        aug.set_random_seed(seed)


def _seed_epoch(cfg: SonosegConfig, epoch: int, rank: int, train_ds) -> int:
    s = epoch_seed(cfg.train.seed, epoch, rank)
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)
    if hasattr(train_ds, "set_epoch"):
        train_ds.set_epoch(epoch)
    aug = getattr(train_ds, "augment", None)
    if aug is not None:
        _reseed_augment(aug, s)
    return s


def _loaders(cfg: SonosegConfig, split, cache_dir: Path, ctx: DistContext, soft_targets=None):
    if cfg.is_3d:
        from sonoseg.train.volume_setup import volume_loaders

        return volume_loaders(cfg, split, ctx)
    from sonoseg.data import SegmentationDataset
    from sonoseg.data.augment import build_augmentation

    aug = build_augmentation(cfg.augment, seed=cfg.train.seed, fill=cfg.preprocess.pad_value) if cfg.augment.enabled else None
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
        sampler = _train_sampler(split, train_ds)
    from sonoseg.data import seed_worker  # per-worker reseed of numpy/random/augmenter (derived from the epoch seed)

    kw = dict(num_workers=cfg.data.num_workers, persistent_workers=False, pin_memory=torch.cuda.is_available(),
              worker_init_fn=seed_worker if cfg.data.num_workers > 0 else None)
    train_dl = DataLoader(train_ds, batch_size=cfg.data.batch_size, sampler=sampler, drop_last=drop_last, **kw)
    val_dl = DataLoader(val_ds, batch_size=cfg.data.batch_size, sampler=SequentialSampler(val_ds), **kw)
    if len(train_dl) == 0:  # never run an epoch of zero optimiser steps and report loss 0
        raise ConfigError(f"no training batch: {len(train_ds)} training image(s) with batch size {cfg.data.batch_size}")
    return train_ds, val_ds, train_dl, val_dl, note


def _sample_id(sample) -> str:
    """Stem, or ``source/stem`` in a multi-source run (two sources may both have a ``0001.png``)."""
    return f"{sample.source}/{sample.stem}" if sample.source else sample.stem


def _train_sampler(split, train_ds):
    """Plain shuffling, or -- when the sources' weights differ -- draws with replacement where each
    image's chance is its source's weight (``len(train)`` draws per epoch). Both seeded per epoch."""
    weights = getattr(split, "weights", {}) or {}
    if len(set(weights.values())) <= 1:
        return RandomSampler(train_ds, generator=torch.Generator())
    per_image = [weights[s.source] for s in split.train]
    return WeightedRandomSampler(per_image, num_samples=len(per_image), replacement=True, generator=torch.Generator())


def _teacher_targets(cfg: SonosegConfig, split, cache_dir: Path, ctx: DistContext, log, show_progress: bool):
    """The distillation teacher's soft targets for the training images (None without a teacher): rank 0
    computes and caches them, the other ranks read the cache."""
    d = cfg.train.distill
    if not d.teacher or d.weight == 0:
        return None
    if cfg.is_3d:
        raise ConfigError("distillation is available for 2D models only")
    from sonoseg.train.distill import teacher_targets

    kw = dict(tta=d.teacher_tta, log=log if ctx.is_main else (lambda _m: None))
    targets = teacher_targets(d.teacher, split.train, cfg, cache_dir, compute=True, **kw) if ctx.is_main else None
    barrier(ctx)
    return targets if targets is not None else teacher_targets(d.teacher, split.train, cfg, cache_dir, compute=False, **kw)


def _preload(ds, enabled: bool) -> None:
    ds.preload(show_progress=enabled)


def _threads(cfg, ctx, warn) -> int:
    """``train.threads`` if set (warned when it oversubscribes the machine), else the machine's
    default shared among the DDP processes."""
    from sonoseg.system import apply_threads, default_threads, resolve_threads

    if cfg.train.threads:
        n = resolve_threads(cfg.train.threads, warn=warn)
    else:
        n = max(1, default_threads() // max(1, ctx.world_size))
    return apply_threads(n)


def train(cfg: SonosegConfig, run: Optional[RunOptions] = None, *, log: Callable[[str], None] = print,
          **legacy) -> TrainResult:
    """Train one model as ``cfg`` says, started as ``run`` says (:class:`RunOptions`: where, resume,
    folds, fine-tuning init, time budget). ``resume``: continues exactly with the run's saved config
    (``epochs`` may extend it); ``time_limit_s`` sets ``stopped_early`` when it stops the run. The old
    keywords (``out=``, ``resume=`` ...) still work this release, with a DeprecationWarning."""
    run = options_with_legacy(RunOptions, run, legacy, "train")
    out, name, resume, folds, epochs = run.out, run.name, run.resume, run.folds, run.epochs
    init, init_partial, time_limit_s, show_progress = run.init, run.init_partial, run.time_limit_s, run.show_progress
    from sonoseg.models import create_model_from_config
    from sonoseg.train.init_weights import init_from_checkpoint
    from sonoseg.train.losses import build_loss

    t_start = time.time()
    ctx = init_distributed(cfg.train.device)
    payload = None
    if resume is not None:
        rpath = Path(resume)
        rpath = rpath / "last.pt" if rpath.is_dir() else rpath
        payload = load_checkpoint(rpath)
        if "optimizer_state" not in payload:
            raise ConfigError(f"{rpath}: checkpoint has no training state (slim/shipped checkpoint); cannot resume")
        saved = checkpoint_config(payload)
        if epochs is not None:  # allow extending a finished run
            saved.train.epochs = epochs
        cfg = saved
        run_dir = rpath.parent
        folds = folds or recorded_folds(run_dir)  # a fold of a CV run resumes on its own fold's split
    else:
        run_dir = new_run_dir(out, name) if ctx.is_main else Path(out) / (name or "_")
    if ctx.enabled:  # all ranks must agree on the run directory
        obj = [str(run_dir)]
        torch.distributed.broadcast_object_list(obj, src=0)
        run_dir = Path(obj[0])

    seed_everything(cfg.train.seed, cfg.train.deterministic)
    threads = _threads(cfg, ctx, log if ctx.is_main else None)
    device = select_device(cfg.train.device, ctx.local_rank if ctx.enabled else None)
    amp = bool(cfg.train.amp and device.type == "cuda")
    main = ctx.is_main

    if cfg.is_3d:
        from sonoseg.train.volume_setup import resolve_volume_config, select_volume_samples

        if folds is not None:
            raise ConfigError("k-fold cross-validation is not available for volumes yet")
        if resume is None:
            resolve_volume_config(cfg, log if main else (lambda _m: None))
        split = select_volume_samples(cfg, run_dir)
    else:
        split = select_samples(cfg, run_dir, folds)
    if resume is None and not cfg.is_3d:
        resolve_class_names(cfg, split.train + split.val, log if main else (lambda _m: None))
    if resume is None and cfg.train.qat.enabled:  # record the int8 grid trained for (null = this CPU's)
        from sonoseg.runtime.qat import resolve_weight_bits

        cfg.train.qat.weight_bits = resolve_weight_bits(cfg.train.qat)
    if main and resume is None:
        save_config(cfg, run_dir / "config.yaml")
        (run_dir / "samples.json").write_text(json.dumps(  # provenance: exactly which images trained/validated
            {"split_file": str(split.split_file), **({"folds": list(folds)} if folds is not None else {}),
             "train": [_sample_id(s) for s in split.train],
             "val": [_sample_id(s) for s in split.val],
             **({"sources": {k: {"split_file": str(v), "weight": split.weights[k],
                                 "train": sum(s.source == k for s in split.train), "val": sum(s.source == k for s in split.val)}
                             for k, v in split.split_files.items()}} if len(getattr(split, "split_files", {})) > 1 else {})},
            indent=1))
    from sonoseg.data.cache import preprocessed_cache_dir

    cache_dir = preprocessed_cache_dir(cfg.data.cache_dir)  # keyed by file fingerprint + preprocess config
    soft = _teacher_targets(cfg, split, cache_dir, ctx, log, show_progress)
    train_ds, val_ds, train_dl, val_dl, note = _loaders(cfg, split, cache_dir, ctx, soft)
    if main:
        if note:
            log(f"note: {note}")
        what = f"{len(split.train)} train / {len(split.val)} val volumes ({len(train_ds)} patches per epoch)" \
            if cfg.is_3d else f"{len(train_ds)} train / {len(val_ds)} val images"
        log(f"run {run_dir}: {what}, device {device}"
            + (f", {ctx.world_size} processes" if ctx.enabled else "") + f", {threads} thread(s) per process")
        _preload(train_ds, show_progress)
        _preload(val_ds, show_progress)
    barrier(ctx)

    model = create_model_from_config(cfg.model).to(device)
    if cfg.train.channels_last and not cfg.is_3d:
        model = model.to(memory_format=torch.channels_last)
        model.sonoseg_channels_last = True  # train_one_epoch / validate send batches as NHWC
    loss_fn = build_loss(cfg.train.loss, classes=cfg.model.classes, dice_weight=cfg.train.dice_weight)
    if cfg.model.class_names():
        loss_fn = joint_loss(loss_fn, cfg, train_ds.class_index)
        if main:
            log(f"class head: {', '.join(cfg.model.class_names())}; class loss weight {cfg.model.classification.loss_weight}, "
                f"class weights {[round(w, 3) for w in loss_fn.class_weights.tolist()] if loss_fn.class_weights is not None else 'none'}")
    if soft is not None:
        from sonoseg.train.distill import DistillLoss

        head = cfg.model.classification
        loss_fn = DistillLoss(loss_fn, cfg.train.distill.weight, head.loss_weight if head is not None else 0.0)
        if main:
            log(f"distillation from {cfg.train.distill.teacher}: loss = {1 - cfg.train.distill.weight:.2f} x ground truth "
                f"+ {cfg.train.distill.weight:.2f} x teacher")
    optimizer = build_optimizer(model.parameters(), cfg.train)
    scheduler = build_scheduler(optimizer, cfg.train)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    start_epoch, best, best_epoch, bad_epochs = 1, -math.inf, 0, 0
    if init is not None and payload is None:
        report = init_from_checkpoint(model, init, partial=init_partial)
        if main:
            log(f"initialised weights from {init}: {report.summary()}")
    if payload is not None:
        model.load_state_dict(payload["model_state"])
        optimizer.load_state_dict(payload["optimizer_state"])
        if scheduler is not None and payload.get("scheduler_state"):
            restore_scheduler(scheduler, payload["scheduler_state"], cfg.train)
        if payload.get("scaler_state"):
            scaler.load_state_dict(payload["scaler_state"])
        if payload.get("rng_state"):
            restore_rng_state(payload["rng_state"])
        start_epoch = payload["epoch"] + 1
        best = payload["best_score"] if payload["best_score"] is not None else -math.inf
        best_epoch = payload.get("best_epoch", 0)
        bad_epochs = payload.get("bad_epochs", 0)
        if main:
            history.restore(run_dir / "metrics.csv", payload)
            log(f"resumed from epoch {payload['epoch']} (best val score {best:.4f})")
    from sonoseg.train.volume_setup import sliding_forward

    val_forward = sliding_forward(model, cfg)  # 3D: whole volumes through the inference sliding window
    qat = None
    if cfg.train.qat.enabled:  # before DDP, which then broadcasts the range buffers with the others
        from sonoseg.runtime.qat import attach_from_config

        qat = attach_from_config(model, cfg, device)
        if payload is not None and payload.get("qat_ranges"):
            qat.load_ranges(payload["qat_ranges"])
        if main:
            log(f"quantisation-aware training from epoch {cfg.train.qat.start_epoch}: {qat.summary()}")
    # find_unused_parameters: smp's timm EfficientNet encoders keep a conv_head + bn2 that the decoders never use
    net = torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True,
    ) if ctx.enabled else model

    writer = None
    if main and cfg.train.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    csv_path, png_path = run_dir / "metrics.csv", run_dir / "curves.png"
    stopped_early, epoch = False, start_epoch - 1
    last_plot = time.time()
    for epoch in range(start_epoch, cfg.train.epochs + 1):
        t0 = time.time()
        s = _seed_epoch(cfg, epoch, ctx.rank, train_ds)
        if qat is not None:  # validation measures the int8 simulation too: that model ships
            qat.options.active = epoch >= cfg.train.qat.start_epoch
            if epoch == cfg.train.qat.start_epoch > start_epoch:  # best.pt: chosen among the QAT epochs
                best, bad_epochs = -math.inf, 0
        if isinstance(train_dl.sampler, DistributedSampler):
            train_dl.sampler.set_epoch(epoch)
        else:
            train_dl.sampler.generator.manual_seed(s)
        train_loss = _run_epoch(net, train_dl, loss_fn, optimizer, device, scaler, cfg, amp, epoch, main and show_progress)
        if ctx.enabled:
            from sonoseg.train.distributed import all_reduce_mean

            train_loss = all_reduce_mean(train_loss, ctx, device)
        cls_val: dict = {}
        if main:
            with validation_threads(ctx, device, threads):
                val_loss, val_dice = validate(model, val_dl, loss_fn, device, cfg.model.classes, amp, class_out=cls_val,
                                              forward=val_forward)
        else:
            val_loss, val_dice = 0.0, 0.0
        val_dice = 0.0 if math.isnan(val_dice) else val_dice
        cls_scores = quick_scores(cls_val["probs"], cls_val["labels"], len(cfg.model.class_names())) \
            if "probs" in cls_val else {}
        score = monitor_score(val_dice, cls_scores)
        per_source = source_scores(cls_val, val_ds.samples, len(cfg.model.class_names())) if main and not cfg.is_3d else {}
        if per_source:  # each source counts equally in the choice of best.pt, whatever its size
            score = float(np.mean([v["score"] for v in per_source.values()]))
        score = broadcast_float(score, ctx, device)
        step_scheduler(scheduler, score)
        improved = score > best
        if improved:
            best, best_epoch, bad_epochs = score, epoch, 0
        else:
            bad_epochs += 1
        if main:
            row = dict(epoch=epoch, train_loss=train_loss, val_loss=val_loss, val_dice=val_dice,
                       lr=current_lr(optimizer), epoch_seconds=time.time() - t0, elapsed_seconds=time.time() - t_start,
                       **{f"val_{k}": v for k, v in cls_scores.items()},
                       **{f"val_{m}_{src}": v[m] for src, v in per_source.items() for m in v if m != "score"}, val_score=score)
            history.append_row(csv_path, row)
            if writer is not None:
                for k in ("train_loss", "val_loss", "val_dice", "lr"):
                    writer.add_scalar(k, row[k], epoch)
            state = dict(config=cfg, model_state={k: v.contiguous() for k, v in model.state_dict().items()}, epoch=epoch, best_score=best,
                         metrics={"val_dice": val_dice, "val_loss": val_loss, "val_score": score,
                                  **{f"val_{k}": v for k, v in cls_scores.items()}},
                         **({"qat": qat.record()} if qat is not None else {}))
            extra = dict(optimizer_state=optimizer.state_dict(),
                         scheduler_state=scheduler.state_dict() if scheduler is not None else None,
                         scaler_state=scaler.state_dict(), rng_state=capture_rng_state(),
                         best_epoch=best_epoch, bad_epochs=bad_epochs,
                         **({"qat_ranges": qat.ranges()} if qat is not None else {}),
                         history=history.read_rows(csv_path))  # resume restores metrics.csv from this
            if improved:
                save_checkpoint(run_dir / "best.pt", **state)
            save_checkpoint(run_dir / "last.pt", **state, **extra)
            log(f"epoch {epoch:3d}/{cfg.train.epochs}  loss {train_loss:.4f}  val loss {val_loss:.4f}  "
                f"val Dice {val_dice:.4f}"
                + (f"  bacc {cls_scores['bacc']:.3f}  AUC {cls_scores['auc']:.3f}  score {score:.4f}" if cls_scores else "")
                + "".join(f"  | {src}: Dice {v['dice']:.3f}" + (f" bacc {v['bacc']:.3f}" if "bacc" in v else "")
                          for src, v in per_source.items())
                + f"{' *' if improved else ''}  lr {current_lr(optimizer):.2e}  "
                f"{row['epoch_seconds']:.1f}s")
            if epoch == cfg.train.epochs or time.time() - last_plot > PLOT_EVERY_S:
                history.plot_curves(csv_path, png_path)
                last_plot = time.time()
        if time_limit_s is not None and epoch < cfg.train.epochs:
            over = float((time.time() - t_start) + (time.time() - t0) > time_limit_s)
            if broadcast_float(over, ctx, device):  # rank 0 decides for all
                stopped_early = True
                if main:
                    log(f"time budget reached: stopped after epoch {epoch} ({time_limit_s / 60:.1f} min)")
                break
        pat = cfg.train.early_stopping_patience
        if pat is not None and bad_epochs >= pat:
            stopped_early = True
            if main:
                log(f"early stopping: no improvement for {pat} epochs")
            break
    if writer is not None:
        writer.close()
    if main and csv_path.is_file() and epoch != cfg.train.epochs:  # stopped early: the final curves
        history.plot_curves(csv_path, png_path)
    barrier(ctx)
    result = TrainResult(str(run_dir), str(run_dir / "best.pt"), str(run_dir / "last.pt"), float(best),
                         int(best_epoch), int(epoch), stopped_early, str(csv_path),
                         str(png_path) if png_path.exists() else None, time.time() - t_start,
                         "mean(val Dice, val balanced accuracy)" if cfg.model.class_names() else "val Dice")
    if main:
        (run_dir / "summary.json").write_text(json.dumps(asdict(result), indent=2))
    cleanup(ctx)
    return result


def recorded_folds(run_dir: Path) -> Optional[tuple[int, int]]:
    """The (k, i) a cross-validation fold was trained with, from its samples.json; None for other runs."""
    try:
        k, i = json.loads((Path(run_dir) / "samples.json").read_text())["folds"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return int(k), int(i)


def resolve_class_names(cfg: SonosegConfig, samples, log: Callable[[str], None]) -> None:
    """Fill ``model.classification.names`` from the samples' classes (sorted), or turn the head off
    when the data has no class column; ConfigError if given names miss a class of the data."""
    head = cfg.model.classification
    if head is None or not head.enabled:
        return
    found = sorted({s.cls for s in samples if s.cls is not None})
    if not head.names:
        if len(found) < 2:
            log("class head off: the dataset's labels.csv has no class column with >= 2 classes")
            head.enabled = False
            return
        head.names = found
    unknown = sorted(set(found) - set(head.names))
    if unknown:
        raise ConfigError(f"model.classification.names {head.names} lack the data's class(es) {', '.join(unknown)}")


def joint_loss(seg_loss, cfg: SonosegConfig, class_index):
    """Segmentation loss + weighted cross-entropy (weights from the training split when "balanced")."""
    from sonoseg.train.losses import JointLoss, balanced_class_weights

    head = cfg.model.classification
    k = len(head.names)
    if head.class_weights == "balanced":
        weights = balanced_class_weights(class_index, k)
    elif head.class_weights == "none":
        weights = None
    else:
        weights = list(head.class_weights)
        if len(weights) != k:
            raise ConfigError(f"model.classification.class_weights: {len(weights)} values for {k} classes")
    return JointLoss(seg_loss, head.loss_weight, weights)


def source_scores(val_out: dict, samples, n_classes: int) -> dict:
    """Per-source validation (multi-source runs only): ``{source: {dice, bacc, auc, score}}`` from the
    per-image results of :func:`validate` (loader order = ``samples`` order); {} for one source."""
    names = sorted({s.source for s in samples if s.source is not None})
    if len(names) < 2 or "dice" not in val_out:
        return {}
    out = {}
    for name in names:
        idx = [i for i, s in enumerate(samples) if s.source == name]
        d = [val_out["dice"][i] for i in idx if not math.isnan(val_out["dice"][i])]
        row = {"dice": float(np.mean(d)) if d else 0.0}
        cls = quick_scores(val_out["probs"][idx], val_out["labels"][idx], n_classes) if "probs" in val_out else {}
        row.update({k: cls[k] for k in ("bacc", "auc") if k in cls})
        row["score"] = monitor_score(row["dice"], cls)
        out[name] = row
    return out


def monitor_score(val_dice: float, cls_scores: dict) -> float:
    """What picks best.pt: val Dice, or with a class head the mean of val Dice and balanced accuracy
    (the two headline targets, equally weighted)."""
    if not cls_scores:
        return val_dice
    bacc = cls_scores.get("bacc", math.nan)
    return 0.5 * (val_dice + (0.0 if math.isnan(bacc) else bacc))


def _run_epoch(net, loader, loss_fn, optimizer, device, scaler, cfg, amp, epoch, show):
    if not show:
        return train_one_epoch(net, loader, loss_fn, optimizer, device, scaler, cfg.train.grad_clip_norm, amp)
    from sonoseg.progress import progress

    with progress() as p:
        task = p.add_task(f"epoch {epoch}", total=len(loader))
        return train_one_epoch(net, loader, loss_fn, optimizer, device, scaler, cfg.train.grad_clip_norm, amp,
                               on_batch=lambda _l: p.advance(task))
