"""Seed 003's learning curve: Dice against the number of training images, several seeds per size.

Every cell trains on a subset of the study's training split and keeps the same validation and test
sets. For a seed, the subsets are nested (the first n of one seeded permutation of the training
images), so a bigger size only adds images; the seed also seeds the training run. Sizes are image
counts (seed 003: 5, 10, 15, 20, 25, 45, 65, 85, 105) or, when all are <= 1, fractions of the
training split. A size larger than the training split is a failed cell with its reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from sonoseg.errors import ConfigError
from sonoseg.experiments.options import SizeOptions, check_sizes
from sonoseg.experiments.study import (Cell, Study, StudyResult, labelled_assignment, recipe, run_cells, safe_id,
                                       source_split, write_split)
from sonoseg.experiments.tables import (failed_section, fmt_ci, fmt_num, markdown_table, metric_cols, new_figure,
                                        save_figure, write_outputs)


def parse_numbers(text: Optional[str], what: str, cast=float) -> list:
    """``"5,10,0.5"`` -> numbers; ConfigError naming the flag on junk."""
    if text is None:
        return []
    try:
        vals = [cast(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{what} {text!r}: expected comma-separated numbers") from None
    return vals


def resolve_sizes(sizes: Sequence[float], n_train: int) -> list[tuple[str, int]]:
    """(label, image count) per requested size: fractions when every value is <= 1, else counts."""
    sizes = list(sizes)
    check_sizes(sizes)
    if max(sizes) <= 1:
        out = [(f"{f:g}", max(1, int(round(f * n_train)))) for f in sizes]
    else:
        out = [(str(int(s)), int(s)) for s in sizes]
    seen: set = set()
    return [(label, n) for label, n in out if not (n in seen or seen.add(n))]  # two fractions, one count: once


def size_cells(root: Path, assignment: dict[str, str], sizes: Sequence[tuple[str, int]], seeds: Sequence[int]) -> list[Cell]:
    from sonoseg.data.layout import natural_sorted

    train = natural_sorted([s for s, sp in assignment.items() if sp == "train"])
    fixed = sorted((s, sp) for s, sp in assignment.items() if sp in ("val", "test"))
    eval_split = write_split(fixed, root / "splits" / "valtest.csv")
    cells = []
    for seed in seeds:
        order = [train[i] for i in np.random.default_rng(seed).permutation(len(train))]
        for label, n in sizes:
            cid = safe_id(f"n{n}", f"seed{seed}")
            # a size beyond the split writes the whole split; the cell then fails in check_size
            sp = write_split(sorted([(s, "train") for s in order[:n]] + fixed), root / "splits" / f"{cid}.csv")
            cells.append(Cell(cid, {"size": n, "size_requested": label, "seed": seed, "n_train_available": len(train)},
                              sp, {"val": ("val", eval_split), "test": ("test", eval_split)},
                              overrides=[f"train.seed={seed}"]))
    return cells


def size_table(records: list[dict]):
    """Per cell: size, seed, val/test Dice with CIs."""
    import pandas as pd

    rows = []
    for r in records:
        row = {"size": r["info"]["size"], "seed": r["info"]["seed"], "cell": r["id"], "status": r["status"],
               "reason": r.get("reason")}
        row.update(metric_cols(r, "val", "val", ("dice", "iou")))
        row.update(metric_cols(r, "test", "test", ("dice", "iou")))
        row["train_seconds"] = (r.get("train") or {}).get("seconds")
        rows.append(row)
    return pd.DataFrame(rows)


def curve(df):
    """Per size over the seeds that finished: mean, std (ddof 1), min, max of val and test Dice."""
    import pandas as pd

    ok = df[df.status == "ok"] if len(df) else df
    if ok.empty:
        return pd.DataFrame(columns=["size", "n_seeds"])
    g = ok.groupby("size")
    out = pd.DataFrame({"n_seeds": g.size()})
    for col in ("val_dice", "test_dice"):
        out[f"{col}_mean"] = g[col].mean()
        out[f"{col}_std"] = g[col].std(ddof=1)
        out[f"{col}_min"] = g[col].min()
        out[f"{col}_max"] = g[col].max()
    return out.reset_index()


def size_figure(cv, path: Path, log_x: bool = True) -> Optional[Path]:
    """Mean Dice against training-set size, shaded between the seeds' min and max."""
    if cv.empty:
        return None
    fig, (ax,) = new_figure(1, width=5.5)
    for k, (col, name) in enumerate((("test_dice", "test"), ("val_dice", "validation"))):
        ax.plot(cv["size"], cv[f"{col}_mean"], marker="o", color=f"C{k}", label=f"{name} Dice (mean over seeds)")
        ax.fill_between(cv["size"], cv[f"{col}_min"], cv[f"{col}_max"], color=f"C{k}", alpha=0.2,
                        label=f"{name}: min-max over seeds")
    if log_x:
        ax.set_xscale("log")
    ax.set_xticks(list(cv["size"]))
    ax.set_xticklabels([str(int(s)) for s in cv["size"]], fontsize=7)
    ax.minorticks_off()
    ax.set_xlabel("training images" + (" (log scale)" if log_x else ""))
    ax.set_ylabel("Dice")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def _markdown(df, cv, study: Study, records) -> str:
    head = (f"# Training-set size study\n\nDataset `{study.dataset}`, budget: {study.budget.describe()}; same validation "
            "and test images in every cell. Per cell: Dice mean with its 95% bootstrap CI over the test images.\n\n")
    summary = markdown_table(["training images", "seeds", "test Dice mean ± std", "test min-max", "val Dice mean ± std"],
                             [[str(int(r["size"])), str(int(r["n_seeds"])),
                               f"{r['test_dice_mean']:.3f} ± {fmt_num(r['test_dice_std'], 3)}",
                               f"{r['test_dice_min']:.3f}-{r['test_dice_max']:.3f}",
                               f"{r['val_dice_mean']:.3f} ± {fmt_num(r['val_dice_std'], 3)}"]
                              for _, r in cv.iterrows()]) if not cv.empty else "(no finished cell)\n"
    cells = markdown_table(["training images", "seed", "val Dice", "test Dice", "train s"],
                           [[str(r.size), str(r.seed), fmt_ci(r.val_dice, r.val_dice_lo, r.val_dice_hi),
                             fmt_ci(r.test_dice, r.test_dice_lo, r.test_dice_hi), fmt_num(r.train_seconds, 0)]
                            for r in df.itertuples() if r.status == "ok"])
    return head + summary + "\n## Cells\n\n" + cells + failed_section(records)


def _check_size(cell: Cell) -> None:
    if cell.info["size"] > cell.info["n_train_available"]:
        raise ConfigError(f"size {cell.info['size']}: the training split has only {cell.info['n_train_available']} images")


def size_study(dataset: str | Path, out: str | Path, options: Optional[SizeOptions] = None) -> StudyResult:
    """Run (or resume) the learning curve; writes results.csv/.md, curve.csv and size.png into ``out``."""
    dataset, root, o = Path(dataset), Path(out), options or SizeOptions()
    src = source_split(dataset, o.split_file, root)
    assignment = labelled_assignment(dataset, src)
    n_train = sum(1 for v in assignment.values() if v == "train")
    for need in ("train", "val", "test"):
        if need not in assignment.values():
            raise ConfigError(f"{src}: split {need!r} is empty; the size study needs train, val and test images")
    cells = size_cells(root, assignment, resolve_sizes(o.sizes, n_train), list(o.seeds))
    study = Study("size", root, dataset, recipe(o.config, o.log), [], o,
                  params={"sizes": [c.info["size"] for c in cells[: len(cells) // len(o.seeds)]],
                          "seeds": list(o.seeds), "split_file": str(src), "n_train": n_train})
    records = run_cells(study, cells, before=_check_size)
    df = size_table(records)
    cv = curve(df)
    files = write_outputs(root, "results", df, _markdown(df, cv, study, records))
    cv.to_csv(root / "curve.csv", index=False)
    files["curve"] = root / "curve.csv"
    fig = size_figure(cv, root / "size.png", o.log_x)
    if fig:
        files["png"] = fig
    return StudyResult(root, records, df, files)
