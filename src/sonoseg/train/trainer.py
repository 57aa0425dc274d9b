"""``train(cfg)``: the training run. Orchestrates the small parts in this package; the maths lives
in loop.py, losses.py and optim.py, the loaders and per-epoch seeding in loaders.py, what each epoch records
(metrics.csv, the log line, best.pt / last.pt) in epoch_record.py, persistence in checkpoint.py and history.py.

Resume is exact: shuffling, augmentation and dropout of epoch e are seeded from (seed, epoch) alone,
and model/optimiser/scheduler/scaler/RNG states and the best score come back from ``last.pt``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch.utils.data.distributed import DistributedSampler

from sonoseg._compat.legacy_kwargs import options_with_legacy
from sonoseg.config import SonosegConfig, save_config
from sonoseg.errors import ConfigError
from sonoseg.metrics.classification import quick_scores
from sonoseg.models.checkpoint import checkpoint_config, load_checkpoint
from sonoseg.system.seeding import restore_rng_state, seed_everything
from sonoseg.train import history
from sonoseg.train.data_setup import select_samples
from sonoseg.train.device import select_device
from sonoseg.train.distributed import DistContext, barrier, broadcast_float, cleanup, init_distributed, validation_threads
from sonoseg.train.epoch_record import (EpochScores, RunProgress, TrainParts, epoch_line, epoch_row,
                                        save_epoch_checkpoints)
from sonoseg.train.loaders import build_loaders, sample_id, seed_epoch
from sonoseg.train.loop import train_one_epoch, validate
from sonoseg.train.optim import build_optimizer, build_scheduler, restore_scheduler, step_scheduler
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
    t_start = time.time()
    ctx = init_distributed(cfg.train.device)
    cfg, run_dir, payload, folds = _open_run(cfg, run, ctx)
    fresh, main = payload is None, ctx.is_main
    say = log if main else (lambda _m: None)
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    threads = _threads(cfg, ctx, log if main else None)
    device = select_device(cfg.train.device, ctx.local_rank if ctx.enabled else None)
    amp = bool(cfg.train.amp and device.type == "cuda")

    split = _select_split(cfg, run_dir, folds, fresh, say)
    if fresh and cfg.train.qat.enabled:  # record the int8 grid trained for (null = this CPU's)
        from sonoseg.runtime.qat import resolve_weight_bits

        cfg.train.qat.weight_bits = resolve_weight_bits(cfg.train.qat)
    if main and fresh:
        save_config(cfg, run_dir / "config.yaml")
        _write_samples_json(run_dir, split, folds)
    from sonoseg.data.cache import preprocessed_cache_dir

    cache_dir = preprocessed_cache_dir(cfg.data.cache_dir)  # keyed by file fingerprint + preprocess config
    soft = _teacher_targets(cfg, split, cache_dir, ctx, log, run.show_progress)
    train_ds, val_ds, train_dl, val_dl, note = build_loaders(cfg, split, cache_dir, ctx, soft)
    if main:
        if note:
            log(f"note: {note}")
        what = f"{len(split.train)} train / {len(split.val)} val volumes ({len(train_ds)} patches per epoch)" \
            if cfg.is_3d else f"{len(train_ds)} train / {len(val_ds)} val images"
        log(f"run {run_dir}: {what}, device {device}"
            + (f", {ctx.world_size} processes" if ctx.enabled else "") + f", {threads} thread(s) per process")
        train_ds.preload(show_progress=run.show_progress)
        val_ds.preload(show_progress=run.show_progress)
    barrier(ctx)

    model = _create_model(cfg, device)
    loss_fn = _build_loss(cfg, train_ds, soft, say)
    optimizer = build_optimizer(model.parameters(), cfg.train)
    parts = TrainParts(model, optimizer, build_scheduler(optimizer, cfg.train),
                       torch.amp.GradScaler(device.type, enabled=amp))
    if run.init is not None and fresh:
        from sonoseg.train.init_weights import init_from_checkpoint

        report = init_from_checkpoint(model, run.init, partial=run.init_partial)
        say(f"initialised weights from {run.init}: {report.summary()}")
    prog = RunProgress() if fresh else _restore(payload, parts, cfg, run_dir, main, say)
    from sonoseg.train.volume_setup import sliding_forward

    val_forward = sliding_forward(model, cfg)  # 3D: whole volumes through the inference sliding window
    parts.qat = _attach_qat(model, cfg, device, payload, say)  # before DDP, which then broadcasts its range buffers
    # find_unused_parameters: smp's timm EfficientNet encoders keep a conv_head + bn2 that the decoders never use
    net = torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True,
    ) if ctx.enabled else model

    writer = None
    if main and cfg.train.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    csv_path, png_path = run_dir / "metrics.csv", run_dir / "curves.png"
    stopped_early, epoch = False, prog.start_epoch - 1
    last_plot = time.time()
    for epoch in range(prog.start_epoch, cfg.train.epochs + 1):
        t0 = time.time()
        s = seed_epoch(cfg, epoch, ctx.rank, train_ds)
        if parts.qat is not None:  # validation measures the int8 simulation too: that model ships
            parts.qat.options.active = epoch >= cfg.train.qat.start_epoch
            if epoch == cfg.train.qat.start_epoch > prog.start_epoch:  # best.pt: chosen among the QAT epochs
                prog.best, prog.bad_epochs = -math.inf, 0
        if isinstance(train_dl.sampler, DistributedSampler):
            train_dl.sampler.set_epoch(epoch)
        else:
            train_dl.sampler.generator.manual_seed(s)
        train_loss = _run_epoch(net, train_dl, loss_fn, optimizer, device, parts.scaler, cfg, amp, epoch,
                                main and run.show_progress)
        if ctx.enabled:
            from sonoseg.train.distributed import all_reduce_mean

            train_loss = all_reduce_mean(train_loss, ctx, device)
        sc = _validate_epoch(model, val_dl, val_ds, loss_fn, cfg, device, amp, ctx, threads, val_forward, train_loss)
        step_scheduler(parts.scheduler, sc.score)
        improved = prog.update(sc.score, epoch)
        if main:
            row = epoch_row(epoch, sc, optimizer, time.time() - t0, time.time() - t_start)
            history.append_row(csv_path, row)
            if writer is not None:
                for k in ("train_loss", "val_loss", "val_dice", "lr"):
                    writer.add_scalar(k, row[k], epoch)
            save_epoch_checkpoints(run_dir, cfg, parts, epoch, prog, sc, improved, csv_path)
            log(epoch_line(epoch, cfg.train.epochs, sc, improved, row["lr"], row["epoch_seconds"]))
            if epoch == cfg.train.epochs or time.time() - last_plot > PLOT_EVERY_S:
                history.plot_curves(csv_path, png_path)
                last_plot = time.time()
        why = _stop_reason(run.time_limit_s, t_start, t0, epoch, cfg, prog, ctx, device)
        if why:
            stopped_early = True
            say(why)
            break
    if writer is not None:
        writer.close()
    if main and csv_path.is_file() and epoch != cfg.train.epochs:  # stopped early: the final curves
        history.plot_curves(csv_path, png_path)
    barrier(ctx)
    result = TrainResult(str(run_dir), str(run_dir / "best.pt"), str(run_dir / "last.pt"), float(prog.best),
                         int(prog.best_epoch), int(epoch), stopped_early, str(csv_path),
                         str(png_path) if png_path.exists() else None, time.time() - t_start,
                         "mean(val Dice, val balanced accuracy)" if cfg.model.class_names() else "val Dice")
    if main:
        (run_dir / "summary.json").write_text(json.dumps(asdict(result), indent=2))
    cleanup(ctx)
    return result


def _open_run(cfg: SonosegConfig, run: RunOptions, ctx: DistContext):
    """(config, run directory, resumed checkpoint or None, folds): a resumed run takes its saved config (``epochs``
    may extend it) and, for a fold of a CV run, its fold; a new run gets a fresh directory, agreed by all ranks."""
    payload, folds = None, run.folds
    if run.resume is not None:
        rpath = Path(run.resume)
        rpath = rpath / "last.pt" if rpath.is_dir() else rpath
        payload = load_checkpoint(rpath)
        if "optimizer_state" not in payload:
            raise ConfigError(f"{rpath}: checkpoint has no training state (slim/shipped checkpoint); cannot resume")
        cfg = checkpoint_config(payload)
        if run.epochs is not None:  # allow extending a finished run
            cfg.train.epochs = run.epochs
        run_dir = rpath.parent
        folds = folds or recorded_folds(run_dir)  # a fold of a CV run resumes on its own fold's split
    else:
        run_dir = new_run_dir(run.out, run.name) if ctx.is_main else Path(run.out) / (run.name or "_")
    if ctx.enabled:  # all ranks must agree on the run directory
        obj = [str(run_dir)]
        torch.distributed.broadcast_object_list(obj, src=0)
        run_dir = Path(obj[0])
    return cfg, run_dir, payload, folds


def _select_split(cfg: SonosegConfig, run_dir: Path, folds, fresh: bool, log):
    """The run's train/val samples; a fresh run also resolves what the data decides (volume config, class names)."""
    if cfg.is_3d:
        from sonoseg.train.volume_setup import resolve_volume_config, select_volume_samples

        if folds is not None:
            raise ConfigError("k-fold cross-validation is not available for volumes yet")
        if fresh:
            resolve_volume_config(cfg, log)
        return select_volume_samples(cfg, run_dir)
    split = select_samples(cfg, run_dir, folds)
    if fresh:
        resolve_class_names(cfg, split.train + split.val, log)
    return split


def _write_samples_json(run_dir: Path, split, folds) -> None:
    """Provenance: exactly which images trained and validated (and per source, from which split file)."""
    sources = {k: {"split_file": str(v), "weight": split.weights[k],
                   "train": sum(s.source == k for s in split.train), "val": sum(s.source == k for s in split.val)}
               for k, v in split.split_files.items()} if len(getattr(split, "split_files", {})) > 1 else None
    (run_dir / "samples.json").write_text(json.dumps(
        {"split_file": str(split.split_file), **({"folds": list(folds)} if folds is not None else {}),
         "train": [sample_id(s) for s in split.train], "val": [sample_id(s) for s in split.val],
         **({"sources": sources} if sources else {})}, indent=1))


def _create_model(cfg: SonosegConfig, device) -> torch.nn.Module:
    from sonoseg.models import create_model_from_config

    model = create_model_from_config(cfg.model).to(device)
    if cfg.train.channels_last and not cfg.is_3d:
        model = model.to(memory_format=torch.channels_last)
        model.sonoseg_channels_last = True  # train_one_epoch / validate send batches as NHWC
    return model


def _build_loss(cfg: SonosegConfig, train_ds, soft, log):
    """The segmentation loss, joined by the class head's cross-entropy and the distillation term when present."""
    from sonoseg.train.losses import build_loss

    loss_fn = build_loss(cfg.train.loss, classes=cfg.model.classes, dice_weight=cfg.train.dice_weight)
    if cfg.model.class_names():
        loss_fn = joint_loss(loss_fn, cfg, train_ds.class_index)
        weights = loss_fn.class_weights
        shown = [round(w, 3) for w in weights.tolist()] if weights is not None else "none"
        log(f"class head: {', '.join(cfg.model.class_names())}; class loss weight "
            f"{cfg.model.classification.loss_weight}, class weights {shown}")
    if soft is not None:
        from sonoseg.train.distill import DistillLoss

        head = cfg.model.classification
        loss_fn = DistillLoss(loss_fn, cfg.train.distill.weight, head.loss_weight if head is not None else 0.0)
        log(f"distillation from {cfg.train.distill.teacher}: loss = {1 - cfg.train.distill.weight:.2f} x ground truth "
            f"+ {cfg.train.distill.weight:.2f} x teacher")
    return loss_fn


def _restore(payload: dict, parts: TrainParts, cfg: SonosegConfig, run_dir: Path, main: bool, log) -> RunProgress:
    """A resumed run's model, optimiser, schedule, scaler and RNG states, its metrics.csv, and where it stood."""
    parts.model.load_state_dict(payload["model_state"])
    parts.optimizer.load_state_dict(payload["optimizer_state"])
    if parts.scheduler is not None and payload.get("scheduler_state"):
        restore_scheduler(parts.scheduler, payload["scheduler_state"], cfg.train)
    if payload.get("scaler_state"):
        parts.scaler.load_state_dict(payload["scaler_state"])
    if payload.get("rng_state"):
        restore_rng_state(payload["rng_state"])
    prog = RunProgress(payload["epoch"] + 1, payload["best_score"] if payload["best_score"] is not None else -math.inf,
                     payload.get("best_epoch", 0), payload.get("bad_epochs", 0))
    if main:
        history.restore(run_dir / "metrics.csv", payload)
    log(f"resumed from epoch {payload['epoch']} (best val score {prog.best:.4f})")
    return prog


def _attach_qat(model, cfg: SonosegConfig, device, payload: Optional[dict], log):
    """Quantisation-aware training's fake-quant state (None when off), with a resumed run's ranges."""
    if not cfg.train.qat.enabled:
        return None
    from sonoseg.runtime.qat import attach_from_config

    qat = attach_from_config(model, cfg, device)
    if payload is not None and payload.get("qat_ranges"):
        qat.load_ranges(payload["qat_ranges"])
    log(f"quantisation-aware training from epoch {cfg.train.qat.start_epoch}: {qat.summary()}")
    return qat


def _validate_epoch(model, val_dl, val_ds, loss_fn, cfg: SonosegConfig, device, amp: bool, ctx: DistContext,
                    threads: int, val_forward, train_loss: float) -> EpochScores:
    """Rank 0 validates (with every rank's threads); the monitor score, per source in a multi-source run (each
    source counts equally in the choice of best.pt, whatever its size), is broadcast to all ranks."""
    cls_val: dict = {}
    if ctx.is_main:
        with validation_threads(ctx, device, threads):
            val_loss, val_dice = validate(model, val_dl, loss_fn, device, cfg.model.classes, amp, class_out=cls_val,
                                          forward=val_forward)
    else:
        val_loss, val_dice = 0.0, 0.0
    val_dice = 0.0 if math.isnan(val_dice) else val_dice
    n_classes = len(cfg.model.class_names())
    cls_scores = quick_scores(cls_val["probs"], cls_val["labels"], n_classes) if "probs" in cls_val else {}
    score = monitor_score(val_dice, cls_scores)
    per_source = source_scores(cls_val, val_ds.samples, n_classes) if ctx.is_main and not cfg.is_3d else {}
    if per_source:
        score = float(np.mean([v["score"] for v in per_source.values()]))
    return EpochScores(train_loss, val_loss, val_dice, cls_scores, per_source, broadcast_float(score, ctx, device))


def _stop_reason(time_limit_s: Optional[float], t_start: float, t0: float, epoch: int, cfg: SonosegConfig,
                 prog: RunProgress, ctx: DistContext, device) -> Optional[str]:
    """Why the run stops after this epoch (time budget: rank 0 decides for all; early stopping), else None."""
    if time_limit_s is not None and epoch < cfg.train.epochs:
        over = float((time.time() - t_start) + (time.time() - t0) > time_limit_s)
        if broadcast_float(over, ctx, device):
            return f"time budget reached: stopped after epoch {epoch} ({time_limit_s / 60:.1f} min)"
    pat = cfg.train.early_stopping_patience
    if pat is not None and prog.bad_epochs >= pat:
        return f"early stopping: no improvement for {pat} epochs"
    return None


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
