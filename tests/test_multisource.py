"""Multi-source training and evaluation: each source keeps its split, validation and evaluation are
reported per source, source weights change how often images are drawn, NHWC training is the same maths."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sonoseg.config import DataSource, load_config


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory) -> tuple[Path, Path]:
    """Two phantom datasets whose file names collide (phantom_0000... in both), as real ones often do."""
    from sonoseg.data.phantom import write_phantom_dataset

    base = tmp_path_factory.mktemp("two")
    return (write_phantom_dataset(base / "alpha", n=12, size=(64, 64), seed=1),
            write_phantom_dataset(base / "beta", n=10, size=(64, 64), seed=2))


def _split_file(root: Path, out: Path, seed: int) -> Path:
    from sonoseg.data import discover_dataset, make_split, write_split_csv

    write_split_csv(make_split(discover_dataset(root), seed=seed), out)
    return out


def _cfg(tmp: Path, sources: list[DataSource], epochs: int = 1):
    cfg = load_config(None, [
        f"data.cache_dir={tmp / 'cache'}", "data.batch_size=4", "model.name=unet",
        "model.params={base_channels: 4, depth: 2}", "preprocess.size=[32, 32]", f"train.epochs={epochs}",
        "train.threads=1", "augment.enabled=false"])
    cfg.data.sources = sources
    return cfg


def test_each_source_keeps_its_own_split(two_sources, tmp_path):
    from sonoseg.data import read_split_csv
    from sonoseg.train.data_setup import select_samples

    a, b = two_sources
    fa, fb = _split_file(a, tmp_path / "a.csv", 3), _split_file(b, tmp_path / "b.csv", 4)
    split = select_samples(_cfg(tmp_path, [DataSource(root=str(a), split_file=str(fa)),
                                           DataSource(root=str(b), split_file=str(fb), weight=2)]), tmp_path)
    assert split.sources == ["alpha", "beta"] and split.weights == {"alpha": 1.0, "beta": 2.0}
    for root, f, name in ((a, fa, "alpha"), (b, fb, "beta")):
        want = read_split_csv(f)
        got_train = sorted(s.stem for s in split.train if s.source == name)
        got_val = sorted(s.stem for s in split.val if s.source == name)
        assert got_train == sorted(k for k, v in want.items() if v == "train")
        assert got_val == sorted(k for k, v in want.items() if v == "val")
        assert all(s.image_path.parent.parent == root for s in split.train + split.val if s.source == name)


def test_source_names_must_differ(two_sources, tmp_path):
    from sonoseg.errors import ConfigError
    from sonoseg.train.data_setup import select_samples

    a, _ = two_sources
    with pytest.raises(ConfigError, match="share the name 'alpha'"):
        select_samples(_cfg(tmp_path, [DataSource(root=str(a)), DataSource(root=str(a))]), tmp_path)


def test_training_reports_validation_per_source(two_sources, tmp_path):
    from sonoseg.train.options import RunOptions
    from sonoseg.train.trainer import train

    a, b = two_sources
    res = train(_cfg(tmp_path, [DataSource(root=str(a)), DataSource(root=str(b), name="second")], epochs=2),
                RunOptions(out=tmp_path / "runs", name="ms", show_progress=False), log=lambda m: None)
    run = Path(res.run_dir)
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert len(rows) == 2
    for r in rows:  # no class head: a source's score is its val Dice; the run's score is their mean
        da, db = float(r["val_dice_alpha"]), float(r["val_dice_second"])
        assert math.isclose(float(r["val_score"]), (da + db) / 2, rel_tol=1e-9)
    samples = json.loads((run / "samples.json").read_text())
    assert set(samples["sources"]) == {"alpha", "second"}
    assert all(s.split("/")[0] in ("alpha", "second") for s in samples["train"] + samples["val"])
    assert (run / "split_alpha.csv").is_file() and (run / "split_second.csv").is_file()
    # resume restores the per-source columns from the checkpoint
    res2 = train(_cfg(tmp_path, []), RunOptions(resume=run, epochs=3, show_progress=False), log=lambda m: None)
    rows = list(csv.DictReader((Path(res2.run_dir) / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"] and all(r["val_dice_second"] for r in rows)


def test_source_weight_sets_how_often_images_are_drawn(two_sources, tmp_path):
    from sonoseg.train.data_setup import select_samples
    from sonoseg.train.loaders import train_sampler

    a, b = two_sources
    split = select_samples(_cfg(tmp_path, [DataSource(root=str(a)), DataSource(root=str(b), weight=3)]), tmp_path)
    sampler = train_sampler(split, split.train)
    sampler.generator.manual_seed(0)
    draws = [i for _ in range(400) for i in sampler]
    beta = sum(split.train[i].source == "beta" for i in draws) / len(draws)
    na = sum(s.source == "alpha" for s in split.train)
    nb = len(split.train) - na
    expected = 3 * nb / (na + 3 * nb)
    assert abs(beta - expected) < 0.03, (beta, expected)  # seeded: the same draws every run
    even = select_samples(_cfg(tmp_path, [DataSource(root=str(a)), DataSource(root=str(b))]), tmp_path)
    assert type(train_sampler(even, even.train)).__name__ == "RandomSampler"  # equal weights: each image once


def test_cli_pairs_split_files_with_datasets(tmp_path):
    from sonoseg.cli.train_cmd import _sources
    from sonoseg.errors import ConfigError

    got = _sources([Path("x/a"), Path("y/b")], [Path("a.csv"), Path("b.csv")], [1.0, 2.5])
    assert [(s.root, s.split_file, s.weight, s.label()) for s in got] == [
        ("x/a", "a.csv", 1.0, "a"), ("y/b", "b.csv", 2.5, "b")]
    with pytest.raises(ConfigError, match="one per dataset"):
        _sources([Path("a"), Path("b")], [Path("a.csv")], [])


def test_channels_last_training_step_is_the_same_maths():
    """One optimiser step in NCHW and in NHWC from the same weights: same loss and same new weights."""
    from sonoseg.models import create_model
    from sonoseg.train.losses import build_loss

    torch.manual_seed(0)
    ref = create_model("unet", base_channels=4, depth=2)
    x = torch.rand(2, 1, 32, 32)
    y = (torch.rand(2, 1, 32, 32) > 0.7).float()
    results = []
    for cl in (False, True):
        m = create_model("unet", base_channels=4, depth=2)
        m.load_state_dict(ref.state_dict())
        xi = x
        if cl:
            m = m.to(memory_format=torch.channels_last)
            xi = x.contiguous(memory_format=torch.channels_last)
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        loss = build_loss("dice_bce", classes=1)(m(xi), y)
        loss.backward()
        opt.step()
        results.append((float(loss.detach()), {k: v.contiguous() for k, v in m.state_dict().items()}))
    assert math.isclose(results[0][0], results[1][0], rel_tol=1e-5)
    for k, v in results[0][1].items():
        assert torch.allclose(v, results[1][1][k], atol=1e-5), k


def test_detection_summary_counts_misses_and_false_lesions():
    from sonoseg.evaluate.detection import detection_line, detection_summary

    df = pd.DataFrame([
        {"stem": "l1", "gt_empty": False, "pred_empty": False, "dice": 0.8},
        {"stem": "l2", "gt_empty": False, "pred_empty": False, "dice": 0.6},
        {"stem": "l3", "gt_empty": False, "pred_empty": True, "dice": 0.0},
        {"stem": "n1", "gt_empty": True, "pred_empty": True, "dice": np.nan},
        {"stem": "n2", "gt_empty": True, "pred_empty": False, "dice": 0.0},
    ])
    d = detection_summary(df, {"l1": True, "l2": False, "l3": True, "n1": False, "n2": False})
    assert d["n_lesion_images"] == 3 and d["n_no_lesion_images"] == 2
    assert d["missed_by_mask"] == pytest.approx(1 / 3) and d["n_missed_by_mask"] == 1
    assert d["missed_by_decision"] == pytest.approx(1 / 3) and d["n_missed_by_decision"] == 1  # l2
    assert d["false_lesion_by_mask"] == pytest.approx(0.5) and d["false_lesion_by_decision"] == 0.0
    assert d["dice_lesion_images"] == pytest.approx((0.8 + 0.6 + 0.0) / 3)
    assert d["dice_found_lesions"] == pytest.approx(0.7)
    assert "33.3% by the mask (1/3)" in detection_line(d)


def test_evaluate_several_datasets_writes_a_table_per_source(two_sources, tiny_model, tmp_path):
    from typer.testing import CliRunner

    from sonoseg.cli.main import app

    a, b = two_sources
    out = tmp_path / "ev"
    res = CliRunner().invoke(app, ["evaluate", str(a), str(b), "--model", str(tiny_model), "--out", str(out),
                                   "--n-boot", "50", "--threads", "1", "--no-progress"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "per_source.json").read_text())["sources"]
    assert set(summary) == {"alpha", "beta"}
    for name in ("alpha", "beta"):
        metrics = json.loads((out / name / "metrics.json").read_text())
        assert summary[name]["dice"] == pytest.approx(metrics["dice"]["mean"])
        per_image = pd.read_csv(out / name / "per_image.csv")
        lesion = ~per_image["gt_empty"].astype(bool)
        assert summary[name]["missed_by_mask"] == pytest.approx(per_image["pred_empty"][lesion].astype(bool).mean())
    md = (out / "per_source.md").read_text()
    assert "| | alpha | beta |" in md and "lesions missed by the mask" in md
    bad = CliRunner().invoke(app, ["evaluate", str(a), str(b), "--split-file", str(tmp_path / "x.csv"),
                                   "--model", str(tiny_model), "--out", str(out)])
    assert bad.exit_code != 0 and "one per dataset" in bad.output
