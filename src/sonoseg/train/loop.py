"""One training epoch and one validation pass. Kept free of checkpointing/logging concerns."""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from sonoseg.models.padding import split_outputs


def _loss(loss_fn: Callable, outputs, y: torch.Tensor, batch: dict, device) -> torch.Tensor:
    """Joint losses also take the class labels; plain segmentation losses see the mask logits only;
    a distillation loss takes the whole batch (its soft targets)."""
    if getattr(loss_fn, "distill", False):
        return loss_fn(outputs, y, batch, device)
    if getattr(loss_fn, "joint", False):
        cls = batch.get("cls")
        return loss_fn(outputs, y, None if cls is None else cls.to(device))
    return loss_fn(split_outputs(outputs)[0], y)


def _to_model(x: torch.Tensor, device, model: torch.nn.Module, non_blocking: bool = False) -> torch.Tensor:
    """The batch on the model's device, NHWC when the model's weights are (see train.channels_last)."""
    inner = getattr(model, "module", model)  # DDP wraps the model
    fmt = torch.channels_last if x.dim() == 4 and getattr(inner, "sonoseg_channels_last", False) else torch.preserve_format
    return x.to(device, non_blocking=non_blocking, memory_format=fmt)


def per_image_dice(logits: torch.Tensor, target: torch.Tensor, classes: int) -> list[float]:
    """Hard Dice per image on the model grid (foreground classes averaged for multi-class).

    Empty ground truth *and* empty prediction gives NaN (excluded from the mean) so empty-vs-empty
    images never inflate validation Dice; empty GT with a false-positive prediction gives 0.
    """
    if classes == 1:
        pred = (logits > 0).flatten(1).float()
        gt = (target > 0.5).flatten(1).float()
        pairs = [(pred, gt)]
    else:
        lab = logits.argmax(1)
        pairs = [((lab == c).flatten(1).float(), (target == c).flatten(1).float()) for c in range(1, classes)]
    out = []
    for i in range(logits.shape[0]):
        vals = []
        for p, g in pairs:
            denom = float(p[i].sum() + g[i].sum())
            if denom == 0:
                continue
            vals.append(2.0 * float((p[i] * g[i]).sum()) / denom)
        out.append(sum(vals) / len(vals) if vals else math.nan)
    return out


def train_one_epoch(
    model: torch.nn.Module,
    loader,
    loss_fn: Callable,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    scaler: Optional[torch.amp.GradScaler] = None,
    grad_clip_norm: Optional[float] = None,
    amp: bool = False,
    on_batch: Optional[Callable[[float], None]] = None,
) -> float:
    model.train()
    total, n = 0.0, 0
    for batch in loader:
        x = _to_model(batch["image"], device, model, non_blocking=True)
        y = batch["mask"].to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, enabled=amp):
            loss = _loss(loss_fn, model(x), y, batch, device)
        if scaler is not None and scaler.is_enabled():
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            if grad_clip_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip_norm)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if grad_clip_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip_norm)
            optimizer.step()
        total += float(loss.detach()) * x.shape[0]
        n += x.shape[0]
        if on_batch is not None:
            on_batch(float(loss.detach()))
    return total / max(n, 1)


@torch.no_grad()
def validate(model: torch.nn.Module, loader, loss_fn: Callable, device: torch.device, classes: int,
             amp: bool = False, class_out: Optional[dict] = None,
             forward: Optional[Callable] = None) -> tuple[float, float]:
    """Returns (mean loss, mean per-image Dice over images where Dice is defined).

    ``forward(x)`` replaces ``model(x)`` (3D: sliding-window inference over whole volumes).

    ``class_out`` (a dict) receives ``dice`` (per image, in loader order, NaN where undefined) and, with a
    class head, ``probs`` (N x C softmax) and ``labels`` (N)."""
    model.eval()
    total, n, dices, probs, labels = 0.0, 0, [], [], []
    for batch in loader:
        x = _to_model(batch["image"], device, model)
        y = batch["mask"].to(device)
        with torch.autocast(device_type=device.type, enabled=amp):
            out = model(x) if forward is None else forward(x)
        logits, class_logits = split_outputs(out)
        out = (logits.float(), class_logits.float()) if class_logits is not None else logits.float()
        total += float(_loss(loss_fn, out, y, batch, device)) * x.shape[0]
        n += x.shape[0]
        dices.extend(per_image_dice(logits.float(), y, classes))
        if class_logits is not None and "cls" in batch:
            probs.append(torch.softmax(class_logits.float(), 1).cpu())
            labels.append(batch["cls"].cpu())
    if class_out is not None:
        class_out["dice"] = list(dices)
    if class_out is not None and probs:
        class_out["probs"] = torch.cat(probs).numpy()
        class_out["labels"] = torch.cat(labels).numpy()
    finite = [d for d in dices if not math.isnan(d)]
    return total / max(n, 1), (sum(finite) / len(finite) if finite else float("nan"))
