"""k-fold cross-validation: one ordinary training run per fold, grouped and duplicate-aware folds
over the train+val part of the split (the test part is never touched).

A CV run of real size outlasts a working session (five folds of the breast recipe are hours on a CPU),
so it resumes: ``resume=CV_DIR`` keeps every fold that finished (its ``summary.json``), continues a fold
that was cut from its ``last.pt`` on that fold's own split, and starts the folds not begun, all with the
configuration the CV run was started with (``cv_config.yaml``)."""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Callable, Optional

from sonoseg.config import SonosegConfig, load_config, save_config
from sonoseg.errors import ConfigError
from sonoseg.train.data_setup import select_samples
from sonoseg.train.loaders import sample_id
from sonoseg.train.options import RunOptions
from sonoseg.train.trainer import TrainResult, new_run_dir, train

CV_CONFIG = "cv_config.yaml"
CV_FOLDS = "cv_folds.json"  # k, so a resume cannot mix fold sets


def _fold_dir_ready(fold_dir: Path, log: Callable[[str], None]) -> None:
    """A fold folder cut before its first epoch holds no checkpoint: clear it so the fold starts afresh
    in the same place. One holding anything else unexpected is left alone and refused."""
    if not fold_dir.exists():
        return
    files = {p.name for p in fold_dir.iterdir()}
    written_before_epoch_1 = {"config.yaml", "samples.json", "tensorboard", "split.csv"}
    if all(f in written_before_epoch_1 or (f.startswith("split_") and f.endswith(".csv")) for f in files):
        log(f"{fold_dir.name}: cut before its first epoch; starting it again")
        shutil.rmtree(fold_dir)
    else:
        raise ConfigError(f"{fold_dir}: neither finished (summary.json) nor resumable (last.pt); move it away")


def _check_new_fold_matches_kept(parent: Path, cfg: SonosegConfig, k: int, i: int) -> None:
    """A fold about to start must fit the folds already trained (perhaps in another session, on another machine,
    from a copy): its val images disjoint from theirs and theirs all in its training set. Otherwise the
    out-of-fold scores would judge images with a model that trained on them; refused before any epoch."""
    recorded = {}
    for p in parent.glob("fold-*/samples.json"):
        if p.parent.name != f"fold-{i}":
            recorded[p.parent.name] = set(json.loads(p.read_text())["val"])
    if not recorded:
        return
    with tempfile.TemporaryDirectory() as tmp:  # a fresh split writes its CSV: not into the CV run
        split = select_samples(cfg.model_copy(deep=True), Path(tmp), (k, i))
    val, train_ids = {sample_id(s) for s in split.val}, {sample_id(s) for s in split.train}
    for name, other in sorted(recorded.items()):
        if other & val or not other <= train_ids:
            raise ConfigError(
                f"{parent / name}: its val images are not the fold this data and code make now "
                f"({len(other & val)} shared with fold-{i}'s val, {len(other - train_ids)} outside its training set); "
                "the data, the split files or the fold code changed since it trained")


def train_kfold(cfg: Optional[SonosegConfig], k: int, out: str | Path = "runs", name: Optional[str] = None,
                log: Callable[[str], None] = print, show_progress: bool = True,
                resume: Optional[str | Path] = None, epochs: Optional[int] = None) -> dict:
    """Train fold 0..k-1 (or resume the CV run in ``resume``; ``cfg`` is then ignored and may be None).
    ``epochs`` extends the folds' epoch count, as ``--epochs`` does for one resumed run."""
    if resume is not None:
        parent = Path(resume)
        if not (parent / CV_CONFIG).is_file():
            raise ConfigError(f"{parent}: not a cross-validation run ({CV_CONFIG} missing)")
        started_k = json.loads((parent / CV_FOLDS).read_text())["k"] if (parent / CV_FOLDS).is_file() else k
        if started_k != k:
            raise ConfigError(f"{parent}: a {started_k}-fold run; resume it with --folds {started_k}")
        cfg = load_config(parent / CV_CONFIG)
    else:
        if cfg is None:
            raise ConfigError("a new cross-validation run needs a config")
        parent = new_run_dir(out, name or f"cv{k}")
        save_config(cfg, parent / CV_CONFIG)
        (parent / CV_FOLDS).write_text(json.dumps({"k": k}))
    if epochs is not None:  # recorded, so folds begun after this resume train as long as the others
        cfg.train.epochs = epochs
        save_config(cfg, parent / CV_CONFIG)
    results: list[TrainResult] = []
    for i in range(k):
        fold_dir = parent / f"fold-{i}"
        done = fold_dir / "summary.json"
        finished = json.loads(done.read_text()) if done.is_file() else None
        if finished and (epochs is None or finished["epochs_run"] >= epochs):
            log(f"fold {i + 1}/{k}: finished earlier, kept")
            results.append(TrainResult(**finished))
            continue
        if (fold_dir / "last.pt").is_file():
            log(f"fold {i + 1}/{k}: resuming {fold_dir}")
            run = RunOptions(resume=fold_dir, epochs=cfg.train.epochs, show_progress=show_progress)
        else:
            _fold_dir_ready(fold_dir, log)
            _check_new_fold_matches_kept(parent, cfg, k, i)
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
