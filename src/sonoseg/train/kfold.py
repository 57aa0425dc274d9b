"""k-fold cross-validation: one ordinary training run per fold, grouped and duplicate-aware folds
over the train+val part of the split (the test part is never touched)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Callable, Optional

from sonoseg.config import SonosegConfig
from sonoseg.train.options import RunOptions
from sonoseg.train.trainer import TrainResult, new_run_dir, train


def train_kfold(cfg: SonosegConfig, k: int, out: str | Path = "runs", name: Optional[str] = None,
                log: Callable[[str], None] = print, show_progress: bool = True) -> dict:
    parent = new_run_dir(out, name or f"cv{k}")
    results: list[TrainResult] = []
    for i in range(k):
        log(f"fold {i + 1}/{k}")
        run = RunOptions(out=parent, name=f"fold-{i}", folds=(k, i), show_progress=show_progress)
        results.append(train(cfg.model_copy(deep=True), run, log=log))
    dices = [r.best_dice for r in results]
    summary = {
        "k": k,
        "folds": [r.__dict__ for r in results],
        "val_dice_mean": statistics.fmean(dices),
        "val_dice_std": statistics.stdev(dices) if k > 1 else 0.0,
    }
    (parent / "cv_summary.json").write_text(json.dumps(summary, indent=2))
    log(f"cross-validation: val Dice {summary['val_dice_mean']:.4f} ± {summary['val_dice_std']:.4f} over {k} folds")
    summary["run_dir"] = str(parent)
    return summary
