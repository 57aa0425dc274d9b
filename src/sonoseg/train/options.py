"""``RunOptions``: how one training run is started, as opposed to what is trained (the SonosegConfig,
which is saved with the run and restored on resume). ``sonoseg train`` builds one from its flags;
k-fold CV and studies build one per run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from sonoseg.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    out: str | Path = "runs"  # parent folder of the run directory
    name: Optional[str] = None  # run directory name (default run-<timestamp>); never overwritten
    resume: Optional[str | Path] = None  # a run directory or its last.pt: continue exactly, with its saved config
    epochs: Optional[int] = None  # with resume: extend the saved run to this many epochs
    folds: Optional[tuple[int, int]] = None  # (k, i): train fold i of k-fold cross-validation
    init: Optional[str | Path] = None  # checkpoint whose weights start a new run (fresh optimiser and schedule)
    init_partial: bool = False  # with init: only the tensors that match by name and shape
    time_limit_s: Optional[float] = None  # stop after the epoch past which one more would overrun this budget
    show_progress: bool = True  # progress bars while preloading and in each epoch

    def __post_init__(self) -> None:
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"epochs {self.epochs} must be >= 1")
        if self.folds is not None:
            k, i = self.folds
            if k < 2:
                raise ConfigError(f"k-fold needs k >= 2, got {k}")
            if not 0 <= i < k:
                raise ConfigError(f"fold {i} of k={k}: folds are numbered 0..{k - 1}")
        if self.time_limit_s is not None and not self.time_limit_s > 0:
            raise ConfigError(f"time limit {self.time_limit_s} s must be > 0")
