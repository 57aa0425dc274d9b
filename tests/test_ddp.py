"""DDP on 2 CPU processes (gloo): the documented semantics of sonoseg.train.distributed.

1. Gradient averaging: N processes with per-process batch b take exactly the step that one process
   takes with batch N*b (checked on a BatchNorm-free model, where this holds exactly).
2. `torchrun -m sonoseg train` with 2 processes: one run directory, rank-0-only metrics/checkpoints.
"""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1))


def _batch():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 1, 16, 16, generator=g)
    y = (torch.rand(4, 1, 16, 16, generator=g) > 0.5).float()
    return x, y


def _loss(logits, y):
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, y)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    from sonoseg.train.loop import train_one_epoch

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    model = _tiny_model()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.5)
    x, y = _batch()
    shard = slice(rank * 2, rank * 2 + 2)
    train_one_epoch(ddp, [{"image": x[shard], "mask": y[shard]}], _loss, opt, torch.device("cpu"))
    if rank == 0:
        torch.save(model.state_dict(), out)
    dist.barrier()
    dist.destroy_process_group()


def test_ddp_step_equals_single_process_big_batch(tmp_path):
    from sonoseg.train.loop import train_one_epoch

    out = tmp_path / "ddp.pt"
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    ddp_state = torch.load(out)

    model = _tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = _batch()
    train_one_epoch(model, [{"image": x, "mask": y}], _loss, opt, torch.device("cpu"))
    init = _tiny_model().state_dict()
    for k, v in model.state_dict().items():
        assert not torch.equal(v, init[k]), "the step must change the weights"
        torch.testing.assert_close(ddp_state[k], v, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_torchrun_two_processes_train_cli(tmp_path):
    from sonoseg.data.phantom import write_phantom_dataset

    root = write_phantom_dataset(tmp_path / "ds", n=12, size=(64, 64), seed=3)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port", str(_free_port()),
           "-m", "sonoseg", "train", str(root), "--out", str(tmp_path / "runs"), "--name", "ddp",
           "--epochs", "2", "--batch-size", "2", "--arch", "unet", "--no-progress",
           "--set", "model.params={base_channels: 8, depth: 2}", "--set", "preprocess.size=[64, 64]",
           "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "augment.enabled=false"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    runs = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    assert [p.name for p in runs] == ["ddp"], "all ranks must share one run directory"
    rows = list(csv.DictReader((runs[0] / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2], "only rank 0 writes one row per epoch"
    assert proc.stdout.count("epoch   1/2") == 1, "only rank 0 logs"
    ck = torch.load(runs[0] / "last.pt", weights_only=False)
    assert ck["epoch"] == 2 and "optimizer_state" in ck


@pytest.mark.slow
def test_torchrun_trains_the_breast_recipe_with_its_unused_encoder_head(tmp_path):
    """FPN + timm EfficientNet-Lite0 + class head under DDP: smp's timm encoder keeps a conv_head/bn2 that
    no decoder uses, and DDP refuses a second step unless it is told to look for unused parameters."""
    from sonoseg.data.phantom import write_phantom_dataset

    root = write_phantom_dataset(tmp_path / "ds", n=16, size=(64, 64), seed=5, classes=("benign", "malignant"))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port", str(_free_port()),
           "-m", "sonoseg", "train", str(root), "--out", str(tmp_path / "runs"), "--name", "ddp",
           "--epochs", "1", "--batch-size", "2", "--arch", "fpn", "--encoder", "timm-tf_efficientnet_lite0",
           "--no-progress", "--set", "model.encoder_weights=null", "--set", "model.classification={pooling: avg}",
           "--set", "preprocess.size=[64, 64]", "--set", f"data.cache_dir={tmp_path / 'cache'}",
           "--set", "augment.enabled=false"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "class head: benign, malignant" in proc.stdout
    rows = list(csv.DictReader((tmp_path / "runs" / "ddp" / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1]


def test_rank0_validates_with_every_ranks_threads_and_gives_them_back():
    """On CPU, rank 0 validates alone while the others wait: it borrows their threads, then restores its own;
    other ranks, single-process runs and GPU runs keep their thread count."""
    from sonoseg.train.distributed import DistContext, validation_threads

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        cpu = torch.device("cpu")
        with validation_threads(DistContext(True, 0, 2, 0), cpu, 1) as n:
            assert n == 2 and torch.get_num_threads() == 2
        assert torch.get_num_threads() == 1
        for ctx, dev in ((DistContext(True, 1, 2, 1), cpu), (DistContext(), cpu), (DistContext(True, 0, 2, 0), torch.device("cuda", 0))):
            with validation_threads(ctx, dev, 1) as n:
                assert n == 1 and torch.get_num_threads() == 1
        with pytest.raises(RuntimeError):  # an error inside validation still gives the threads back
            with validation_threads(DistContext(True, 0, 2, 0), cpu, 1):
                raise RuntimeError("validation failed")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
