"""What a training run keeps per epoch: where it stands (:class:`RunProgress`), the epoch's figures
(:class:`EpochScores`), its line of metrics.csv and of the log, and its checkpoints (best.pt when the monitor
improved, last.pt with everything an exact resume needs)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from sonoseg.config import SonosegConfig
from sonoseg.models.checkpoint import save_checkpoint
from sonoseg.system.seeding import capture_rng_state
from sonoseg.train import history
from sonoseg.train.optim import current_lr


@dataclass
class TrainParts:
    """What one run trains and steps: the model (unwrapped), its optimiser, schedule, AMP scaler, QAT state."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: torch.amp.GradScaler
    qat: object = None


@dataclass
class RunProgress:
    """Where the run stands: the next epoch, the best monitored score so far and the epochs since it."""

    start_epoch: int = 1
    best: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0

    def update(self, score: float, epoch: int) -> bool:
        """Record one epoch's score; True when it is the best so far."""
        if score > self.best:
            self.best, self.best_epoch, self.bad_epochs = score, epoch, 0
            return True
        self.bad_epochs += 1
        return False


@dataclass
class EpochScores:
    """One epoch's figures: losses, val Dice, class-head scores (overall and per source), the monitor score."""

    train_loss: float
    val_loss: float
    val_dice: float
    cls: dict
    per_source: dict
    score: float


def epoch_row(epoch: int, sc: EpochScores, optimizer, epoch_s: float, elapsed_s: float) -> dict:
    """One line of metrics.csv."""
    return dict(epoch=epoch, train_loss=sc.train_loss, val_loss=sc.val_loss, val_dice=sc.val_dice,
                lr=current_lr(optimizer), epoch_seconds=epoch_s, elapsed_seconds=elapsed_s,
                **{f"val_{k}": v for k, v in sc.cls.items()},
                **{f"val_{m}_{src}": v[m] for src, v in sc.per_source.items() for m in v if m != "score"},
                val_score=sc.score)


def save_epoch_checkpoints(run_dir: Path, cfg: SonosegConfig, parts: TrainParts, epoch: int, prog: RunProgress,
                           sc: EpochScores, improved: bool, csv_path: Path) -> None:
    """best.pt when the epoch improved the monitor; last.pt always, with everything an exact resume needs."""
    qat = parts.qat
    state = dict(config=cfg, model_state={k: v.contiguous() for k, v in parts.model.state_dict().items()},
                 epoch=epoch, best_score=prog.best,
                 metrics={"val_dice": sc.val_dice, "val_loss": sc.val_loss, "val_score": sc.score,
                          **{f"val_{k}": v for k, v in sc.cls.items()}},
                 **({"qat": qat.record()} if qat is not None else {}))
    extra = dict(optimizer_state=parts.optimizer.state_dict(),
                 scheduler_state=parts.scheduler.state_dict() if parts.scheduler is not None else None,
                 scaler_state=parts.scaler.state_dict(), rng_state=capture_rng_state(),
                 best_epoch=prog.best_epoch, bad_epochs=prog.bad_epochs,
                 **({"qat_ranges": qat.ranges()} if qat is not None else {}),
                 history=history.read_rows(csv_path))  # resume restores metrics.csv from this
    if improved:
        save_checkpoint(run_dir / "best.pt", **state)
    save_checkpoint(run_dir / "last.pt", **state, **extra)


def epoch_line(epoch: int, epochs: int, sc: EpochScores, improved: bool, lr: float, seconds: float) -> str:
    """The log line of one epoch (``*`` marks a new best.pt)."""
    return (f"epoch {epoch:3d}/{epochs}  loss {sc.train_loss:.4f}  val loss {sc.val_loss:.4f}  "
            f"val Dice {sc.val_dice:.4f}"
            + (f"  bacc {sc.cls['bacc']:.3f}  AUC {sc.cls['auc']:.3f}  score {sc.score:.4f}" if sc.cls else "")
            + "".join(f"  | {src}: Dice {v['dice']:.3f}" + (f" bacc {v['bacc']:.3f}" if "bacc" in v else "")
                      for src, v in sc.per_source.items())
            + f"{' *' if improved else ''}  lr {lr:.2e}  {seconds:.1f}s")
