"""``sonoseg split DATASET --out split.csv``: stratified, patient-grouped, near-duplicate-aware split."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from sonoseg.cli._common import console, err_console, handle_errors, progress
from sonoseg.data.dedup import DEFAULT_DUP_THRESHOLD, find_duplicate_groups, image_hashes, layout_warning
from sonoseg.data.layout import discover_dataset
from sonoseg.data.split import make_split, write_split_csv


def _counts_table(result) -> Table:
    counts = result.counts()
    classes = sorted({c for cnt in counts.values() for c in cnt}, key=lambda c: (c is None, str(c)))
    t = Table(title="images per split", show_lines=False)
    t.add_column("split")
    for c in classes:
        t.add_column(str(c) if c is not None else "(no class)", justify="right")
    t.add_column("total", justify="right")
    t.add_column("share", justify="right")
    n = len(result.rows)
    for name in result.names:
        cnt = counts[name]
        total = sum(cnt.values())
        t.add_row(name, *[str(cnt.get(c, 0)) for c in classes], str(total), f"{total / n:.1%}")
    return t


def _group_size_table(result) -> Table:
    """Independent groups per split by size (1, 2, 3, 4, 5+): shows the multi-image groups are spread."""
    hist = result.group_size_histogram()
    bins = ["1", "2", "3", "4", "5+"]
    t = Table(title="groups per split by size (images per group)", show_lines=False)
    t.add_column("split")
    for b in bins:
        t.add_column(b, justify="right")
    for name in result.names:
        h = hist[name]
        row = [h.get(k, 0) for k in (1, 2, 3, 4)] + [sum(c for k, c in h.items() if k >= 5)]
        t.add_row(name, *map(str, row))
    return t


def register(app: typer.Typer) -> None:
    @app.command("split")
    @handle_errors
    def split(
        dataset: Path = typer.Argument(..., help="dataset folder with images/, masks/ and optional labels.csv"),
        out: Path = typer.Option(..., "--out", "-o", help="CSV to write (columns image, split, class, group, patient, dup_group)"),
        seed: int = typer.Option(0, "--seed", help="random seed; the same seed gives the same split"),
        ratios: tuple[float, float, float] = typer.Option((0.7, 0.15, 0.15), "--ratios", help="train val test shares"),
        dup_threshold: int = typer.Option(
            DEFAULT_DUP_THRESHOLD, "--dup-threshold", help="max pHash and dHash Hamming distance (of 64 bits) for near-duplicates; -1 disables"
        ),
        cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="where per-file hashes are cached (default: user cache)"),
        show_duplicates: bool = typer.Option(False, "--show-duplicates", help="list every duplicate group"),
    ) -> None:
        """Split a dataset into train/val/test without leaking patients or near-duplicate images."""
        samples = discover_dataset(dataset)
        groups: list[list[int]] = []
        warning = None
        if dup_threshold >= 0:
            paths = [s.image_path for s in samples]
            with progress() as p:
                task = p.add_task("hashing images", total=len(paths))
                hashes = image_hashes(paths, cache_dir=cache_dir, on_progress=lambda k: p.update(task, completed=k))
            groups = find_duplicate_groups(paths, dup_threshold, hashes=hashes)
            warning = layout_warning(hashes, dup_threshold)
        result = make_split(samples, ratios=ratios, seed=seed, dup_threshold=dup_threshold, dup_groups=groups)
        write_split_csv(result, out)

        console.print(_counts_table(result))
        console.print(_group_size_table(result))
        n_patients = len({s.group for s in samples if s.group is not None})
        if n_patients:
            console.print(f"patient groups: {n_patients}")
        if dup_threshold < 0:
            console.print("near-duplicate detection: off")
        else:
            console.print(
                f"near-duplicates (threshold {dup_threshold}): {result.n_duplicate_groups} groups containing "
                f"{result.n_duplicate_images} images; {len(result.cross_class_duplicate_groups)} groups mix classes"
            )
            if warning:
                err_console.print(f"[yellow]warning:[/] {warning}")
            largest = max((len(g) for g in result.duplicate_groups), default=0)
            if largest > max(10, 0.05 * len(samples)):
                err_console.print(
                    f"[yellow]warning:[/] the largest duplicate group has {largest} images; distinct images may be "
                    f"merged (shared layout?) - check with --show-duplicates or lower --dup-threshold"
                )
            if show_duplicates:
                cls = {r.stem: r.cls for r in result.rows}
                for k, g in enumerate(result.duplicate_groups):
                    members = ", ".join(f"{s}" + (f" [{cls[s]}]" if cls[s] else "") for s in g)
                    console.print(f"  dup {k}: {members}", highlight=False, markup=False)
        console.print(f"{len(result.rows)} images in {result.n_units} independent groups -> {out}")
