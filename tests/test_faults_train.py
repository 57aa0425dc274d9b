"""Training faults (issue 15): a DDP rank without a batch, and metrics.csv after an interrupted resume."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TINY = ["--model", "unet", "--set", "model.params={base_channels: 4, depth: 2}", "--set", "preprocess.size=[32, 32]",
        "--set", "augment.enabled=false", "--no-progress"]


def test_plan_shards_adapts_and_refuses():
    from sonoseg.errors import ConfigError
    from sonoseg.train.distributed import plan_shards

    assert plan_shards(100, 2, 4) == (True, None)
    drop, note = plan_shards(6, 2, 4)  # the fault trial: 3 images per rank, batch 4
    assert drop is False and "3 training image(s)" in note
    with pytest.raises(ConfigError, match="cannot be shared by 4 processes"):
        plan_shards(3, 4, 2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dataset_with_split(tmp_path: Path, n_train: int, n_val: int) -> tuple[Path, Path]:
    from sonoseg.data.phantom import write_phantom_dataset

    root = write_phantom_dataset(tmp_path / "ds", n=n_train + n_val, size=(32, 32), seed=5)
    stems = sorted(p.stem for p in (root / "images").iterdir())
    split = tmp_path / "split.csv"
    with split.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "split"])
        for i, s in enumerate(stems):
            w.writerow([s, "train" if i < n_train else "val"])
    return root, split


@pytest.mark.slow
def test_two_processes_with_fewer_images_per_rank_than_the_batch_still_train(tmp_path):
    """6 training images, batch 4, 2 processes: each rank holds 3 < 4. Before the fix both ranks dropped
    their only (partial) batch: zero optimiser steps, loss 0.0000, weights unchanged, exit 0."""
    from sonoseg.train.checkpoint import load_checkpoint

    root, split = _dataset_with_split(tmp_path, 6, 2)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "src"))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port", str(_free_port()),
           "-m", "sonoseg", "train", str(root), "--split-file", str(split), "--out", str(tmp_path / "runs"),
           "--name", "ddp", "--epochs", "1", "--batch-size", "4", "--set", f"data.cache_dir={tmp_path / 'cache'}", *TINY]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "fewer than the batch size 4" in proc.stdout
    rows = list(csv.DictReader((tmp_path / "runs" / "ddp" / "metrics.csv").open()))
    assert float(rows[0]["train_loss"]) > 0.0
    assert "loss 0.0000" not in proc.stdout
    ck = load_checkpoint(tmp_path / "runs" / "ddp" / "last.pt")
    assert ck["epoch"] == 1 and ck["optimizer_state"]["state"], "the optimiser must have taken steps"


def test_resume_restores_metrics_history_from_the_checkpoint(tmp_path):
    """A kill right after --resume started used to leave metrics.csv with some of its rows, and later
    resumes never restored them; the checkpoint now carries the history."""
    from sonoseg.config import load_config
    from sonoseg.train.options import RunOptions
    from sonoseg.train.trainer import train

    root, split = _dataset_with_split(tmp_path, 4, 2)
    cfg = load_config(None, [f"data.root={root}", f"data.split_file={split}", "model.name=unet",
                             "model.params={base_channels: 4, depth: 2}", "preprocess.size=[32, 32]",
                             "augment.enabled=false", "train.epochs=2", "data.batch_size=2",
                             f"data.cache_dir={tmp_path / 'cache'}", "train.threads=1"])
    res = train(cfg, RunOptions(out=tmp_path / "runs", name="r", show_progress=False), log=lambda m: None)
    metrics = Path(res.history_csv)
    full = metrics.read_text().splitlines()
    assert len(full) == 3
    metrics.write_text(full[0] + "\n")  # what a kill during the old truncate-and-rewrite left behind
    train(cfg, RunOptions(resume=Path(res.run_dir), epochs=3, show_progress=False), log=lambda m: None)
    rows = list(csv.DictReader(metrics.open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert rows[0]["train_loss"] == list(csv.DictReader(full))[0]["train_loss"]


def test_history_rewrite_is_atomic(tmp_path, monkeypatch):
    from sonoseg.train import history

    p = tmp_path / "metrics.csv"
    rows = [dict(epoch=e, train_loss=0.5, val_loss=0.4, val_dice=0.1 * e, lr=1e-3, epoch_seconds=1.0,
                 elapsed_seconds=float(e)) for e in (1, 2, 3)]
    history.write_rows(p, rows)

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(Exception):
        history.truncate_after(p, 1)
    assert [r["epoch"] for r in history.read_rows(p)] == [1, 2, 3], "the old history must survive a failed rewrite"
