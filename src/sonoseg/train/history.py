"""Per-epoch metrics: a CSV that grows line by line and a training-curve PNG (loss, Dice, LR)."""

from __future__ import annotations

import csv
from pathlib import Path

FIELDS = ["epoch", "train_loss", "val_loss", "val_dice", "lr", "epoch_seconds", "elapsed_seconds",
          "val_acc", "val_bacc", "val_auc", "val_score"]  # class-head columns stay empty without one


def _fields(rows: list[dict]) -> list[str]:
    """FIELDS, then any further columns the rows carry (per-source validation, e.g. val_dice_busi)."""
    extra = [k for r in rows for k in r if k not in FIELDS]
    return FIELDS + list(dict.fromkeys(extra))


def append_row(path: Path, row: dict) -> None:
    new = not path.exists()
    if new:
        fields = _fields([row])
    else:
        with path.open(newline="") as fh:
            fields = next(csv.reader(fh), None) or FIELDS
    with path.open("a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow(row)


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as fh:
        return [{k: float(v) if k != "epoch" else int(v) for k, v in r.items() if v != ""} for r in csv.DictReader(fh)]


def truncate_after(path: Path, epoch: int) -> None:
    """On resume, drop rows written after the checkpoint's epoch (a crash may have left extra ones)."""
    write_rows(path, [r for r in read_rows(path) if r["epoch"] <= epoch])


def write_rows(path: Path, rows: list[dict]) -> None:
    """Replace the CSV atomically (temporary file, fsync, rename): a kill at any moment leaves
    either the old or the new history, never a partial one."""
    import io

    from sonoseg.io.safety import write_text

    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=_fields(rows), extrasaction="ignore", lineterminator="\r\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    write_text(path, buf.getvalue(), "metrics history")


def restore(path: Path, payload: dict) -> int:
    """Make ``metrics.csv`` match the checkpoint being resumed: the checkpoint carries the rows of
    every epoch up to its own (``history``), which win over whatever the CSV holds now (a kill may have
    truncated it); older checkpoints without that record fall back to truncating the CSV."""
    epoch = int(payload["epoch"])
    saved = payload.get("history")
    if saved is None:
        truncate_after(path, epoch)
    else:
        write_rows(path, [r for r in saved if int(r["epoch"]) <= epoch])
    return len(read_rows(path))


def plot_curves(csv_path: Path, png_path: Path) -> Path | None:
    rows = read_rows(csv_path)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(ep, [r.get("train_loss") for r in rows], label="train")
    axes[0].plot(ep, [r.get("val_loss") for r in rows], label="val")
    axes[0].set_title("loss")
    axes[0].legend()
    axes[1].plot(ep, [r.get("val_dice") for r in rows], color="tab:green")
    best = max(range(len(rows)), key=lambda i: rows[i].get("val_dice", -1))
    axes[1].scatter([ep[best]], [rows[best]["val_dice"]], color="red", zorder=3, label=f"best {rows[best]['val_dice']:.3f}")
    axes[1].set_title("validation Dice")
    axes[1].legend()
    lrs = [r.get("lr") for r in rows]
    axes[2].plot(ep, lrs, color="tab:orange")
    if all(v is not None and v > 0 for v in lrs):
        axes[2].set_yscale("log")
    axes[2].set_title("learning rate")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return png_path
