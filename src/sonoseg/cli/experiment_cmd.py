"""``sonoseg experiment noise|size|grid``: the studies of seeds 003 and 004 on any dataset (thin verbs
over :mod:`sonoseg.experiments`)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from sonoseg.cli._common import THREADS_OPTION, console, fail, handle_errors

experiment = typer.Typer(help="Studies: noise robustness, training-set size, architecture x encoder grid. Each cell is "
                              "a `sonoseg train` run scored by `sonoseg evaluate`; rerunning resumes.",
                         no_args_is_help=True)

DATASET = typer.Argument(..., help="Dataset folder with images/ and masks/.")
SPLIT_FILE = typer.Option(None, "--split-file", help="CSV from `sonoseg split` (train/val/test); default: make one "
                          "in the study folder.")
CONFIG = typer.Option(None, "--config", "-c", help="YAML recipe every cell trains with; default: the shipped default "
                      "model's recipe.")
SET = typer.Option([], "--set", "-s", help="Override for every cell, e.g. --set train.lr=3e-4 (repeatable).")
BUDGET = typer.Option(None, "--budget", help="Per cell: epochs=N,size=H[xW],minutes=M (any subset; default: the "
                      "recipe's epochs and size, no time cap).")
DEVICE = typer.Option(None, help="auto | cpu | cuda | cuda:N | mps (default auto: CUDA when present).")
N_BOOT = typer.Option(1000, help="Bootstrap resamples for the 95% CIs.")
PROGRESS = typer.Option(False, "--progress/--no-progress", help="Per-epoch progress bars of each cell.")
STRICT = typer.Option(False, help="Exit non-zero if any cell failed.")
REPORTS = typer.Option(True, "--report/--no-report", help="Write evaluate's HTML report (with gallery) for each cell's "
                       "test set.")


def _split_list(text: Optional[str]) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _report(result, strict: bool) -> None:
    from rich.table import Table

    t = Table(title=f"{len(result.records)} cells in {result.root}")
    for col in ("cell", "status", "note"):
        t.add_column(col)
    for r in result.records:
        note = r.get("reason") or ("finished earlier" if r.get("skipped") else "")
        t.add_row(r["id"], "[green]ok[/]" if r["status"] == "ok" else "[red]failed[/]", note)
    console.print(t)
    console.print("[green]wrote[/] " + ", ".join(str(p) for p in result.files.values()))
    if result.failed and (strict or len(result.failed) == len(result.records)):
        fail(f"{len(result.failed)} of {len(result.records)} cells failed (reasons above; rerun to retry them)")


def _log(msg: str) -> None:
    console.print(msg, highlight=False, markup=False)


def _kw(split_file, config, set_, budget, threads, device, n_boot, reports, progress_bars) -> dict:
    """The :class:`~sonoseg.experiments.StudyOptions` fields every study shares, from the shared flags."""
    return dict(split_file=split_file, config=config, overrides=set_, budget=budget, threads=threads, device=device,
                n_boot=n_boot, reports=reports, log=_log, show_progress=progress_bars)


@experiment.command("noise")
@handle_errors
def noise_cmd(
    dataset: Path = DATASET,
    noise: List[str] = typer.Option([], "--noise", help="KIND=LEVEL[,LEVEL...] with KIND gaussian or speckle, levels "
                                    "in the images' intensity units (repeatable); default: both at 2.5, 7.5 and 20% of "
                                    "full scale."),
    settings: str = typer.Option("baseline,mixed,noisy-val", help="Which of baseline, mixed (noisy in train+val), "
                                 "noisy-val (train clean, validate clean+noisy)."),
    out: Path = typer.Option(Path("studies/noise"), "--out", "-o", help="Study folder (created; reused to resume)."),
    split_file: Optional[Path] = SPLIT_FILE, config: Optional[Path] = CONFIG, set_: List[str] = SET,
    budget: Optional[str] = BUDGET, threads: Optional[int] = THREADS_OPTION, device: Optional[str] = DEVICE,
    n_boot: int = N_BOOT, progress_bars: bool = PROGRESS, strict: bool = STRICT, reports: bool = REPORTS,
) -> None:
    """Seed 003's noise study: baseline, noisy images in train+val, noisy only in validation, level sweep."""
    from sonoseg.experiments import NoiseOptions, noise_study

    opts = NoiseOptions(noises=noise or None, settings=_split_list(settings),
                        **_kw(split_file, config, set_, budget, threads, device, n_boot, reports, progress_bars))
    res = noise_study(dataset, out, opts)
    _report(res, strict)


@experiment.command("size")
@handle_errors
def size_cmd(
    dataset: Path = DATASET,
    sizes: str = typer.Option("5,10,15,20,25,45,65,85,105", help="Training-set sizes: image counts, or fractions of the "
                              "training split when all are <= 1."),
    seeds: str = typer.Option("0,1,2", help="Seeds per size (subset and training seed)."),
    log_x: bool = typer.Option(True, "--log-x/--linear-x", help="Logarithmic size axis in the figure."),
    out: Path = typer.Option(Path("studies/size"), "--out", "-o", help="Study folder (created; reused to resume)."),
    split_file: Optional[Path] = SPLIT_FILE, config: Optional[Path] = CONFIG, set_: List[str] = SET,
    budget: Optional[str] = BUDGET, threads: Optional[int] = THREADS_OPTION, device: Optional[str] = DEVICE,
    n_boot: int = N_BOOT, progress_bars: bool = PROGRESS, strict: bool = STRICT, reports: bool = REPORTS,
) -> None:
    """Seed 003's learning curve: Dice (mean and spread over seeds) against training-set size."""
    from sonoseg.experiments import SizeOptions, size_study
    from sonoseg.experiments.size import parse_numbers

    size_list = parse_numbers(sizes, "--sizes")
    seed_list = parse_numbers(seeds, "--seeds", int)
    if not size_list or not seed_list:
        fail("give at least one size and one seed")
    opts = SizeOptions(sizes=size_list, seeds=seed_list, log_x=log_x,
                       **_kw(split_file, config, set_, budget, threads, device, n_boot, reports, progress_bars))
    res = size_study(dataset, out, opts)
    _report(res, strict)


@experiment.command("grid")
@handle_errors
def grid_cmd(
    dataset: Path = DATASET,
    archs: str = typer.Option(",".join(("unet_smp", "unetplusplus", "manet", "linknet", "fpn", "pspnet", "pan",
                                        "deeplabv3", "deeplabv3plus")),
                              help="Architectures (`sonoseg models` lists them), comma-separated."),
    encoders: str = typer.Option("resnet18,efficientnet-b0,mobilenet_v2", help="Encoders, comma-separated."),
    augment: str = typer.Option("both", help="both | on | off: train each network with and/or without seed 004's "
                                "augmentation (shift +-20%, scale 0.5-2)."),
    speed: bool = typer.Option(True, "--speed/--no-speed", help="Time each network through the int8 path (frames/s)."),
    out: Path = typer.Option(Path("studies/grid"), "--out", "-o", help="Study folder (created; reused to resume)."),
    split_file: Optional[Path] = SPLIT_FILE, config: Optional[Path] = CONFIG, set_: List[str] = SET,
    budget: Optional[str] = BUDGET, threads: Optional[int] = THREADS_OPTION, device: Optional[str] = DEVICE,
    n_boot: int = N_BOOT, progress_bars: bool = PROGRESS, strict: bool = STRICT, reports: bool = REPORTS,
) -> None:
    """Seed 004's grid: every architecture x encoder, with and without augmentation, one recipe; table + Pareto."""
    from sonoseg.experiments import GridOptions, grid_study

    opts = GridOptions(archs=_split_list(archs), encoders=_split_list(encoders), augment=augment, speed=speed,
                       **_kw(split_file, config, set_, budget, threads, device, n_boot, reports, progress_bars))
    res = grid_study(dataset, out, opts)
    _report(res, strict)


def register(app: typer.Typer) -> None:
    app.add_typer(experiment, name="experiment")
