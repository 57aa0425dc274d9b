"""Optimisers and LR schedules from TrainConfig.

ReduceLROnPlateau is stepped once per epoch on validation Dice (mode='max'), never per batch.
"""

from __future__ import annotations

import torch

from sonoseg.config import TrainConfig
from sonoseg.errors import ConfigError


def build_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "rmsprop":  # seed 003
        return torch.optim.RMSprop(params, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    raise ConfigError(f"unknown optimizer {cfg.optimizer!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig):
    """Returns a scheduler or None. Call ``step_scheduler`` once per epoch."""
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=cfg.plateau_factor, patience=cfg.plateau_patience, min_lr=cfg.min_lr
        )
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(cfg.epochs, 1), eta_min=cfg.min_lr)
    if cfg.scheduler == "none":
        return None
    raise ConfigError(f"unknown scheduler {cfg.scheduler!r}")


def restore_scheduler(scheduler, state: dict, cfg: TrainConfig) -> None:
    """Load a saved scheduler state; a cosine schedule is refitted to ``cfg.epochs`` (a run resumed with
    another --epochs continues from its current LR and reaches min_lr on the new last epoch; the saved
    T_max would stop the annealing half-way or restart it)."""
    scheduler.load_state_dict(state)
    if isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
        scheduler.T_max = max(cfg.epochs, 1)


def step_scheduler(scheduler, val_dice: float) -> None:
    if scheduler is None:
        return
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(val_dice)
    else:
        scheduler.step()


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])
