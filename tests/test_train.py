"""Trainer on a tiny synthetic task: exact resume, run-directory hygiene, train -> evaluate end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sonoseg.config import load_config


@pytest.fixture(scope="module")
def phantom_ds(tmp_path_factory) -> Path:
    from sonoseg.data.phantom import write_phantom_dataset

    return write_phantom_dataset(tmp_path_factory.mktemp("ph") / "ds", n=16, size=(64, 64), seed=7)


def _cfg(root: Path, tmp: Path, epochs: int, **extra):
    over = [
        f"data.root={root}", f"data.cache_dir={tmp / 'cache'}", "data.batch_size=4",
        "model.name=unet", "model.params={base_channels: 8, depth: 2}", "preprocess.size=[64, 64]",
        f"train.epochs={epochs}", "train.threads=1", "train.lr=0.01", "train.scheduler=plateau",
        "train.plateau_patience=1", "augment.enabled=true", "augment.speckle_p=0.5",
    ] + [f"{k}={v}" for k, v in extra.items()]
    return load_config(None, over)


def test_resume_gives_same_weights_as_uninterrupted(phantom_ds, tmp_path):
    from sonoseg.train.options import RunOptions
    from sonoseg.train.trainer import train

    quiet = dict(log=lambda m: None)
    full = train(_cfg(phantom_ds, tmp_path, 4), RunOptions(out=tmp_path / "runs", name="full", show_progress=False), **quiet)
    part = train(_cfg(phantom_ds, tmp_path, 2), RunOptions(out=tmp_path / "runs", name="part", show_progress=False), **quiet)
    resumed = train(_cfg(phantom_ds, tmp_path, 4), RunOptions(resume=part.run_dir, epochs=4, show_progress=False), **quiet)
    assert resumed.run_dir == part.run_dir and resumed.epochs_run == 4
    a = torch.load(full.last_checkpoint, weights_only=False)
    b = torch.load(resumed.last_checkpoint, weights_only=False)
    for k in a["model_state"]:
        assert torch.equal(a["model_state"][k], b["model_state"][k]), k
    assert a["best_score"] == b["best_score"]
    assert a["optimizer_state"]["param_groups"][0]["lr"] == b["optimizer_state"]["param_groups"][0]["lr"]
    rows = (Path(resumed.run_dir) / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 4


def test_run_directory_never_overwritten(phantom_ds, tmp_path):
    from sonoseg.train.trainer import new_run_dir

    a = new_run_dir(tmp_path, "x")
    (a / "f").write_text("1")
    b = new_run_dir(tmp_path, "x")
    assert a != b and (a / "f").read_text() == "1"


def test_slim_checkpoint_cannot_resume(phantom_ds, tmp_path):
    from sonoseg.errors import ConfigError
    from sonoseg.train.checkpoint import slim_checkpoint
    from sonoseg.train.options import RunOptions
    from sonoseg.train.trainer import train

    r = train(_cfg(phantom_ds, tmp_path, 1), RunOptions(out=tmp_path / "runs", show_progress=False), log=lambda m: None)
    slim = slim_checkpoint(r.last_checkpoint, tmp_path / "slim.pt", half=True)
    assert slim.stat().st_size < Path(r.last_checkpoint).stat().st_size
    with pytest.raises(ConfigError):
        train(_cfg(phantom_ds, tmp_path, 2), RunOptions(resume=slim, show_progress=False), log=lambda m: None)


def test_train_then_evaluate_end_to_end(tmp_path):
    from typer.testing import CliRunner

    from sonoseg.cli.main import app
    from sonoseg.data.phantom import write_phantom_dataset

    phantom_ds = write_phantom_dataset(tmp_path / "ds", n=30, size=(128, 128), seed=11)

    runner = CliRunner()
    split = tmp_path / "split.csv"
    res = runner.invoke(app, ["split", str(phantom_ds), "--out", str(split), "--seed", "0"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, [
        "train", str(phantom_ds), "--split-file", str(split), "--out", str(tmp_path / "runs"), "--name", "e2e",
        "--epochs", "25", "--arch", "unet", "--no-progress", "--lr", "0.003", "--batch-size", "8",
        "--set", "model.params={base_channels: 8, depth: 2}", "--set", "preprocess.size=[64, 64]",
        "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "train.threads=1", "--set", "augment.enabled=false",
        "--set", "train.scheduler=none", "--set", "train.early_stopping_patience=null",
    ])
    assert res.exit_code == 0, res.output
    run = tmp_path / "runs" / "e2e"
    assert (run / "curves.png").is_file() and (run / "best.pt").is_file()
    out = tmp_path / "eval"
    res = runner.invoke(app, ["evaluate", str(phantom_ds), "--split-file", str(split), "--split", "test",
                              "--model", str(run / "best.pt"), "--out", str(out), "--no-progress", "--n-boot", "200"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("dice", "iou", "precision", "recall", "specificity", "accuracy", "hd95", "assd"):
        assert {"mean", "std", "ci95", "n"} <= set(metrics[key]), key
    assert metrics["dice"]["n"] >= 1
    # "learned something real" is judged on the 22 training images: the 4 test images of this tiny set
    # spread from 0.0 to 0.4 (per-image std ~0.45), so their mean moves with the last bit of floating
    # point on each CPU kind, while the training-split mean is stable (0.52-0.69 across recipes here,
    # an untrained net scores < 0.15)
    res = runner.invoke(app, ["evaluate", str(phantom_ds), "--split-file", str(split), "--split", "train",
                              "--model", str(run / "best.pt"), "--out", str(tmp_path / "eval_train"), "--no-progress",
                              "--n-boot", "50"])
    assert res.exit_code == 0, res.output
    fit = json.loads((tmp_path / "eval_train" / "metrics.json").read_text())["dice"]
    assert fit["n"] >= 15 and fit["mean"] > 0.4
    assert (out / "per_image.csv").is_file()


def test_init_from_checkpoint_starts_a_new_run_from_its_weights(phantom_ds, tmp_path):
    from sonoseg.train.options import RunOptions
    from sonoseg.train.trainer import train

    first = train(_cfg(phantom_ds, tmp_path, 1), RunOptions(out=tmp_path / "runs", name="a", show_progress=False),
                  log=lambda m: None)
    tuned = train(_cfg(phantom_ds, tmp_path, 1, **{"train.lr": 0.0, "train.weight_decay": 0.0}),
                  RunOptions(out=tmp_path / "runs", name="b", init=first.last_checkpoint, show_progress=False),
                  log=lambda m: None)
    a = torch.load(first.last_checkpoint, weights_only=False)["model_state"]
    b = torch.load(tuned.last_checkpoint, weights_only=False)["model_state"]
    weights = [k for k in a if k.endswith("weight")]
    assert weights and all(torch.equal(a[k], b[k]) for k in weights)  # lr 0: parameters unchanged
    assert tuned.run_dir != first.run_dir


def test_kfold_cross_validation_runs_one_training_per_fold(phantom_ds, tmp_path):
    from sonoseg.train.kfold import train_kfold

    summary = train_kfold(_cfg(phantom_ds, tmp_path, 1), k=2, out=tmp_path / "runs", name="cv",
                          log=lambda m: None, show_progress=False)
    run = Path(summary["run_dir"])
    assert sorted(p.name for p in run.iterdir() if p.is_dir()) == ["fold-0", "fold-1"]
    saved = json.loads((run / "cv_summary.json").read_text())
    assert saved["k"] == 2 and len(saved["folds"]) == 2
    # folds partition one pool (train+val of the split): fold 0 validates on what fold 1 trains on
    f0 = json.loads((run / "fold-0" / "samples.json").read_text())
    f1 = json.loads((run / "fold-1" / "samples.json").read_text())
    assert set(f0["val"]).isdisjoint(f1["val"]) and f0["val"] and f1["val"]
    assert set(f0["train"]) == set(f1["val"]) and set(f1["train"]) == set(f0["val"])


def test_a_cut_cross_validation_run_resumes_to_the_same_weights(phantom_ds, tmp_path):
    """Folds that finished are kept, the cut fold continues on its own fold's split, and the result equals
    the uninterrupted run's."""
    from sonoseg.errors import ConfigError
    from sonoseg.train.kfold import train_kfold

    cfg = _cfg(phantom_ds, tmp_path, 2, **{"train.scheduler": "cosine", "train.deterministic": "true"})
    full = Path(train_kfold(cfg, k=2, out=tmp_path / "runs", name="full", log=lambda m: None,
                            show_progress=False)["run_dir"])
    seen: list[str] = []

    def cut_in_fold_2(msg: str) -> None:  # the epoch line comes after last.pt is written
        seen.append(msg)
        if any(m.startswith("fold 2/2") for m in seen) and msg.startswith("epoch   1/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_kfold(cfg, k=2, out=tmp_path / "runs", name="cut", log=cut_in_fold_2, show_progress=False)
    cut = tmp_path / "runs" / "cut"
    assert (cut / "fold-0" / "summary.json").is_file() and not (cut / "fold-1" / "summary.json").exists()
    fold0_before = (cut / "fold-0" / "last.pt").stat().st_mtime_ns
    said: list[str] = []
    summary = train_kfold(None, k=2, resume=cut, log=said.append, show_progress=False)
    assert "fold 1/2: finished earlier, kept" in said and any(m.startswith("fold 2/2: resuming") for m in said)
    assert (cut / "fold-0" / "last.pt").stat().st_mtime_ns == fold0_before  # not trained again
    assert summary["folds"][1]["epochs_run"] == 2
    with pytest.raises(ConfigError, match="a 2-fold run; resume it with --folds 2"):
        train_kfold(None, k=3, resume=cut, log=said.append, show_progress=False)
    for i in (0, 1):
        a = torch.load(full / f"fold-{i}" / "last.pt", weights_only=False)
        b = torch.load(cut / f"fold-{i}" / "last.pt", weights_only=False)
        assert all(torch.equal(a["model_state"][k], b["model_state"][k]) for k in a["model_state"]), f"fold {i}"
    full1 = json.loads((full / "fold-1" / "samples.json").read_text())
    cut1 = json.loads((cut / "fold-1" / "samples.json").read_text())
    assert full1["folds"] == cut1["folds"] == [2, 1] and cut1["val"] == full1["val"]

    def val_dice(run: Path) -> list[str]:  # epoch 2 ran after the resume: it must validate on fold 1's images
        return [r.split(",")[3] for r in (run / "fold-1" / "metrics.csv").read_text().strip().splitlines()[1:]]

    assert val_dice(cut) == val_dice(full) and len(val_dice(cut)) == 2



def test_a_new_fold_that_does_not_fit_the_kept_folds_is_refused_before_it_trains(phantom_ds, tmp_path):
    """Folds kept from another session must be the folds this data and code make now: a kept fold whose val
    images overlap the next fold's val is refused before any epoch (its out-of-fold scores would be flattered)."""
    import shutil

    from sonoseg.errors import ConfigError
    from sonoseg.train.kfold import train_kfold

    run = Path(train_kfold(_cfg(phantom_ds, tmp_path, 1), k=2, out=tmp_path / "runs", name="cv", log=lambda m: None,
                           show_progress=False)["run_dir"])
    fold1_val = json.loads((run / "fold-1" / "samples.json").read_text())["val"]
    shutil.rmtree(run / "fold-1")  # as if fold 1 had not begun: it starts again and fits the kept fold 0
    train_kfold(None, k=2, resume=run, log=lambda m: None, show_progress=False)
    assert json.loads((run / "fold-1" / "samples.json").read_text())["val"] == fold1_val
    shutil.rmtree(run / "fold-1")
    rec = json.loads((run / "fold-0" / "samples.json").read_text())
    rec["val"].append(fold1_val[0])  # fold 0 split another way: one image also in fold 1's val
    (run / "fold-0" / "samples.json").write_text(json.dumps(rec))
    said: list[str] = []
    with pytest.raises(ConfigError, match=r"fold-0: its val images are not the fold .* \(1 shared with fold-1's val"):
        train_kfold(None, k=2, resume=run, log=said.append, show_progress=False)
    assert not (run / "fold-1").exists() and "fold 2/2" not in said


def test_resumed_cosine_schedule_is_refitted_to_the_new_epoch_count():
    """A run of 8 epochs stopped after 2 and resumed with --epochs 4 anneals to min_lr on epoch 4."""
    from sonoseg.config import TrainConfig
    from sonoseg.train.optim import build_optimizer, build_scheduler, restore_scheduler

    cfg = TrainConfig(epochs=8, scheduler="cosine", lr=0.1, min_lr=0.001)
    params = [torch.nn.Parameter(torch.zeros(1))]
    opt = build_optimizer(params, cfg)
    sch = build_scheduler(opt, cfg)
    for _ in range(2):
        opt.step()
        sch.step()
    lr2, state, opt_state = opt.param_groups[0]["lr"], sch.state_dict(), opt.state_dict()
    cfg4 = cfg.model_copy(update={"epochs": 4})
    opt2 = build_optimizer(params, cfg4)
    opt2.load_state_dict(opt_state)
    sch2 = build_scheduler(opt2, cfg4)
    restore_scheduler(sch2, state, cfg4)
    lrs = []
    for _ in range(2):
        opt2.step()
        sch2.step()
        lrs.append(opt2.param_groups[0]["lr"])
    assert lr2 > lrs[0] > lrs[1] and lrs[1] == pytest.approx(0.001)
