"""``sonoseg train``: train a segmentation model on a dataset folder (images/ + masks/)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from sonoseg.cli._common import THREADS_OPTION, console, deprecated, handle_errors, say


def _overrides(dataset, split_file, model, encoder, epochs, batch_size, lr, device, extra, threads=None) -> list[str]:
    o = []
    if dataset:
        o.append(f"data.root={dataset}")
    if split_file:
        o.append(f"data.split_file={split_file}")
    if model:
        o.append(f"model.name={model}")
    if encoder:
        o.append(f"model.encoder={encoder}")
    if epochs is not None:
        o.append(f"train.epochs={epochs}")
    if batch_size is not None:
        o.append(f"data.batch_size={batch_size}")
    if lr is not None:
        o.append(f"train.lr={lr}")
    if device:
        o.append(f"train.device={device}")
    if threads is not None:
        o.append(f"train.threads={threads}")
    return o + list(extra or [])


def _sources(datasets: list[Path], split_files: list[Path], weights: list[float]) -> list:
    """``data.sources`` from repeated DATASET / --split-file / --source-weight (paired by position)."""
    from sonoseg.cli._common import per_dataset
    from sonoseg.config import DataSource

    files = per_dataset(split_files, datasets, "--split-file")
    return [DataSource(root=str(d), split_file=None if f is None else str(f), weight=1.0 if w is None else w)
            for d, f, w in zip(datasets, files, per_dataset(weights, datasets, "--source-weight"))]


def _is_volume_dataset(dataset) -> bool:
    from sonoseg.data.volumes import is_volume_dataset

    return is_volume_dataset(dataset)


def register(app: typer.Typer) -> None:
    @app.command("train")
    @handle_errors
    def train_cmd(
        datasets: Optional[List[Path]] = typer.Argument(None, help="Dataset folder with images/ and masks/ (or set "
                                                        "data.root); several folders train one model on all of them, "
                                                        "each keeping its own split (multi-source)."),
        config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config (see configs/); default: the "
                                              "shipped default model's recipe. A config without a model section "
                                              "(a task: measure, postprocess, ...) is layered over that recipe."),
        set_: List[str] = typer.Option([], "--set", "-s", help="Override, e.g. --set train.lr=3e-4 (repeatable)."),
        split_files: List[Path] = typer.Option([], "--split-file", help="CSV from `sonoseg split` (default: make one); "
                                               "with several datasets one per dataset, in the same order."),
        source_weights: List[float] = typer.Option([], "--source-weight", help="With several datasets: how likely each "
                                                   "dataset's images are drawn, one per dataset (default 1 each: every "
                                                   "image once per epoch)."),
        arch: Optional[str] = typer.Option(None, "--arch", help="Architecture name (`sonoseg models` lists them)."),
        model: Optional[str] = typer.Option(None, "--model", hidden=True, help="Deprecated: use --arch."),
        encoder: Optional[str] = typer.Option(None, help="Encoder for smp architectures, e.g. resnet18."),
        epochs: Optional[int] = typer.Option(None, help="Number of epochs."),
        batch_size: Optional[int] = typer.Option(None, help="Per-process batch size."),
        lr: Optional[float] = typer.Option(None, help="Learning rate."),
        device: Optional[str] = typer.Option(None, help="auto | cpu | cuda | cuda:N | mps"),
        threads: Optional[int] = THREADS_OPTION,
        out: Path = typer.Option(Path("runs"), help="Parent folder of run directories."),
        name: Optional[str] = typer.Option(None, help="Run name (default: run-<timestamp>); never overwritten."),
        resume: Optional[Path] = typer.Option(None, help="Run directory (or its last.pt) to continue exactly; with "
                                              "--folds, a cross-validation run's folder."),
        folds: Optional[int] = typer.Option(None, help="k-fold cross-validation over train+val."),
        init: Optional[Path] = typer.Option(None, help="Start from this checkpoint's weights (fine-tune; same architecture)."),
        init_partial: bool = typer.Option(False, "--init-partial", help="With --init: load only the tensors that match "
                                          "by name and shape (e.g. keep encoder and class head, new decoder)."),
        progress_bars: bool = typer.Option(True, "--progress/--no-progress"),
    ) -> None:
        """Train a model; writes best.pt, last.pt, metrics.csv, curves.png into a new run directory.

        Multi-process: ``torchrun --nproc_per_node=2 -m sonoseg train DATASET ...`` (DDP, gloo on CPU).
        """
        from sonoseg.config import load_config
        from sonoseg.train.kfold import train_kfold
        from sonoseg.train.options import RunOptions
        from sonoseg.train.recipe import banner, choose_base
        from sonoseg.train.trainer import train

        if model is not None:
            deprecated(f"train --model {model}", f"--arch {model}")
            arch = arch or model
        datasets = list(datasets or [])
        if len(split_files) > max(1, len(datasets)):
            from sonoseg.errors import ConfigError

            raise ConfigError(f"{len(split_files)} --split-file values for {len(datasets)} dataset(s): give one per dataset")
        dataset = datasets[0] if len(datasets) == 1 else None
        split_file = split_files[0] if len(datasets) <= 1 and split_files else None
        overrides = _overrides(dataset, split_file, arch, encoder, epochs, batch_size, lr, device, set_, threads)
        log = say  # terminal and --log-file
        volumes = bool(datasets) and _is_volume_dataset(datasets[0])
        base, recipe_kind = choose_base(config, overrides, volumes, resume)
        cfg = load_config(config, overrides, base=base)
        if len(datasets) > 1:
            cfg.data.sources = _sources(datasets, split_files, source_weights)
        if recipe_kind:
            log(banner(recipe_kind, cfg, config))
        if volumes and resume is None and not cfg.is_3d:
            from sonoseg.errors import ConfigError

            raise ConfigError(f"{dataset} holds volumes but the config has no volume section (see configs/ct_organs_fit.yaml)")
        if folds:  # --resume CV_DIR continues a cut cross-validation run with the config it started with
            summary = train_kfold(None if resume else cfg, folds, out=out, name=name, log=log,
                                  show_progress=progress_bars, resume=resume, epochs=epochs if resume else None)
            console.print(f"[green]done[/]: {summary['run_dir']}")
            return
        run = RunOptions(out=out, name=name, resume=resume, epochs=epochs, init=init, init_partial=init_partial,
                         show_progress=progress_bars)
        result = train(cfg, run, log=log)
        say(
            f"[green]done[/]: best {result.monitor} {result.best_dice:.4f} at epoch {result.best_epoch} "
            f"({result.seconds / 60:.1f} min) -> {result.best_checkpoint}"
        )
