"""sonoseg.experiments / `sonoseg experiment`: the three studies on a tiny phantom dataset (64x64, one
epoch, a few cells): table structure, resumption, broken cells recorded while the others run, the
noise itself, the budget."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from sonoseg.cli.main import app

TINY = """model: {name: unet, params: {base_channels: 8, depth: 2}}
preprocess: {size: [64, 64]}
data: {batch_size: 4}
train: {epochs: 1, lr: 0.01, scheduler: none}
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(dataset, split CSV with 6 train / 3 val / 3 test, recipe YAML)."""
    from sonoseg.data import discover_dataset
    from sonoseg.data.phantom import write_phantom_dataset

    root = tmp_path_factory.mktemp("exp")
    ds = write_phantom_dataset(root / "ds", n=12, size=(64, 64), seed=3)
    stems = [s.stem for s in discover_dataset(ds)]
    split = root / "split.csv"
    with open(split, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "split"])
        w.writerows((s, "train" if i < 6 else "val" if i < 9 else "test") for i, s in enumerate(stems))
    cfg = root / "tiny.yaml"
    cfg.write_text(TINY)
    return ds, split, cfg


def _common(tiny, out: Path, budget: str = "epochs=1,size=64") -> list[str]:
    ds, split, cfg = tiny
    return [str(ds), "--split-file", str(split), "--config", str(cfg), "--budget", budget, "--threads", "1",
            "--n-boot", "50", "--no-report", "--out", str(out)]


def _records(out: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in (out / "cells").glob("*/cell.json")}


def test_budget_parsing():
    from sonoseg.errors import ConfigError
    from sonoseg.experiments import Budget

    b = Budget.parse("epochs=3, size=96x128, minutes=2.5")
    assert (b.epochs, b.size, b.minutes) == (3, (96, 128), 2.5)
    assert b.overrides() == ["train.epochs=3", "preprocess.size=[96, 128]"]
    assert Budget.parse("size=64").size == (64, 64) and Budget.parse(None) == Budget()
    for bad in ("epochs=0", "speed=3", "size=abc", "epochs"):
        with pytest.raises(ConfigError):
            Budget.parse(bad)


def test_noise_levels_are_in_the_images_intensity_units():
    from sonoseg.experiments import Noise, add_noise
    from sonoseg.experiments.noise import noise_rng

    flat = np.full((256, 256), 100, np.uint8)
    g = add_noise(flat, Noise("gaussian", 10.0), noise_rng("a", Noise("gaussian", 10.0)))
    assert g.dtype == np.uint8 and abs(float(g.std()) - 10.0) < 0.3 and abs(float(g.mean()) - 100) < 0.3
    # speckle: `level` is the std at full scale (255 for 8-bit), proportional to intensity
    for value, expected in ((200, 20.0), (51, 5.1)):
        img = np.full((256, 256), value, np.uint8)
        s = add_noise(img, Noise("speckle", 25.5), noise_rng("a", Noise("speckle", 25.5)))
        assert abs(float(s.astype(float).std()) - expected) < 0.03 * expected + 0.1
    # deterministic per (image, noise, level); different images get different noise
    n = Noise("gaussian", 30.0)
    assert np.array_equal(add_noise(flat, n, noise_rng("a", n)), add_noise(flat, n, noise_rng("a", n)))
    assert not np.array_equal(add_noise(flat, n, noise_rng("a", n)), add_noise(flat, n, noise_rng("b", n)))
    # clipped to the type's range
    dark = add_noise(np.zeros((64, 64), np.uint8), Noise("gaussian", 50.0), noise_rng("c", n))
    assert dark.min() == 0 and dark.max() <= 255


def test_size_study_cli_table_broken_cell_and_resume(tiny, tmp_path):
    out = tmp_path / "size"
    args = ["experiment", "size", *_common(tiny, out), "--sizes", "2,4,99", "--seeds", "0"]
    res = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    recs = _records(out)
    assert set(recs) == {"n2_seed0", "n4_seed0", "n99_seed0"}
    assert recs["n99_seed0"]["status"] == "failed"
    assert recs["n99_seed0"]["reason"] == "size 99: the training split has only 6 images"
    assert recs["n2_seed0"]["status"] == recs["n4_seed0"]["status"] == "ok"
    # nested subsets, same val/test for every cell
    used = {k: json.loads((out / "cells" / k / "train" / "samples.json").read_text()) for k in ("n2_seed0", "n4_seed0")}
    assert len(used["n2_seed0"]["train"]) == 2 and len(used["n4_seed0"]["train"]) == 4
    assert set(used["n2_seed0"]["train"]) < set(used["n4_seed0"]["train"])
    assert used["n2_seed0"]["val"] == used["n4_seed0"]["val"] and len(used["n2_seed0"]["val"]) == 3
    df = pd.read_csv(out / "results.csv")
    assert list(df["size"]) == [2, 4, 99] and list(df["status"]) == ["ok", "ok", "failed"]
    for col in ("val_dice", "val_dice_lo", "val_dice_hi", "test_dice", "test_dice_lo", "test_dice_hi"):
        assert col in df
    ok = df[df.status == "ok"]
    assert ((ok.test_dice_lo <= ok.test_dice) & (ok.test_dice <= ok.test_dice_hi)).all()
    assert list(pd.read_csv(out / "curve.csv")["size"]) == [2, 4]
    md = (out / "results.md").read_text()
    assert "| training images | seeds |" in md and "`n99_seed0`: size 99" in md
    assert (out / "size.png").stat().st_size > 0
    # metrics are evaluate_model's: the cell's eval folder holds sonoseg evaluate's files
    m = json.loads((out / "cells" / "n2_seed0" / "eval-test" / "metrics.json").read_text())
    assert m["dice"]["mean"] == pytest.approx(recs["n2_seed0"]["metrics"]["test"]["dice"]["mean"])

    # rerun: finished cells are skipped (records untouched), the broken one is retried
    before = {k: (out / "cells" / k / "cell.json").stat().st_mtime_ns for k in ("n2_seed0", "n4_seed0")}
    res = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert res.output.count("finished earlier") >= 2
    assert {k: (out / "cells" / k / "cell.json").stat().st_mtime_ns for k in before} == before
    assert "size 99" in res.output
    # --strict: any failed cell makes the exit non-zero
    assert CliRunner().invoke(app, args + ["--strict"]).exit_code != 0

    # the same folder with another budget is refused (its finished cells would be mixed in)
    res = CliRunner().invoke(app, ["experiment", "size", *_common(tiny, out, "epochs=2,size=64"), "--sizes", "2"])
    assert res.exit_code != 0 and "another budget" in res.output


def test_interrupted_cell_continues_from_its_last_epoch(tiny, tmp_path):
    from sonoseg.experiments import SizeOptions, size_study

    ds, split, cfg = tiny
    kw = dict(sizes=[3], seeds=[0], split_file=split, config=cfg, budget="epochs=2,size=64", threads=1, n_boot=50,
              reports=False)

    def interrupt(msg):  # Ctrl-C right after epoch 1 was saved
        if "epoch   1/2" in msg:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        size_study(ds, tmp_path / "s", SizeOptions(log=interrupt, **kw))
    cell = tmp_path / "s" / "cells" / "n3_seed0"
    assert (cell / "train" / "last.pt").is_file() and not (cell / "cell.json").exists()
    lines: list[str] = []
    res = size_study(ds, tmp_path / "s", SizeOptions(log=lines.append, **kw))
    assert res.records[0]["status"] == "ok" and any("resuming the interrupted training" in m for m in lines)
    assert not any("epoch   1/2" in m for m in lines)  # epoch 1 was not trained again
    rows = (cell / "train" / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2 and not (cell.parent / "train-1").exists()


def test_noise_study_materialises_noisy_copies_in_their_source_split(tiny, tmp_path):
    from sonoseg.data import read_split_csv
    from sonoseg.experiments import NoiseOptions, noise_study

    ds, split, cfg = tiny
    out = tmp_path / "noise"
    opts = NoiseOptions(noises=["gaussian=20"], settings=["baseline", "mixed"], split_file=split, config=cfg,
                        budget="epochs=1,size=64", threads=1, n_boot=50, reports=False, log=lambda m: None)
    res = noise_study(ds, out, opts)
    assert not res.failed and [r["id"] for r in res.records] == ["baseline", "mixed_gaussian20"]
    roles = read_split_csv(out / "splits" / "all.csv")
    src = read_split_csv(split)
    noisy = {s: r for s, r in roles.items() if "__" in s}
    assert len(noisy) == 12  # train, val and test copies (mixed trains on them, both test on them)
    for stem, role in noisy.items():
        assert role == f"{src[stem.split('__')[0]]}@gaussian20"
    # the noisy copy is the clean image plus noise, the mask is the clean mask
    import cv2

    name = next(iter(noisy))
    clean = cv2.imread(str(ds / "images" / f"{name.split('__')[0]}.png"), cv2.IMREAD_UNCHANGED).astype(float)
    dirty = cv2.imread(str(out / "data" / "images" / f"{name}.png"), cv2.IMREAD_UNCHANGED).astype(float)
    assert clean.shape == dirty.shape and 8 < np.abs(dirty - clean).mean() < 20
    assert (out / "data" / "masks" / f"{name}.png").resolve() == (ds / "masks" / f"{name.split('__')[0]}.png").resolve()
    # the mixed cell trained and validated on clean + noisy images; the baseline on clean only
    mixed = json.loads((out / "cells" / "mixed_gaussian20" / "train" / "samples.json").read_text())
    base = json.loads((out / "cells" / "baseline" / "train" / "samples.json").read_text())
    assert len(mixed["train"]) == 12 and sum("__" in s for s in mixed["train"]) == 6 and len(mixed["val"]) == 6
    assert len(base["train"]) == 6 and not any("__" in s for s in base["train"] + base["val"])
    df = res.table
    assert list(df.setting) == ["baseline", "mixed"] and list(df.level) == [20.0, 20.0]
    for col in ("val_dice", "test_clean_dice", "test_noisy_dice", "test_noisy_dice_lo", "test_noisy_dice_hi"):
        assert df[col].notna().all(), col
    assert set(res.records[0]["metrics"]) == {"val", "test", "test_gaussian20"}
    assert (out / "noise.png").is_file() and "| setting | noise | level |" in (out / "results.md").read_text()
    # a rerun writes no noisy image again and skips both cells
    mtime = (out / "data" / "images" / f"{name}.png").stat().st_mtime_ns
    res2 = noise_study(ds, out, opts)
    assert res2.skipped == ["baseline", "mixed_gaussian20"]
    assert (out / "data" / "images" / f"{name}.png").stat().st_mtime_ns == mtime
    # a level added later: the finished baseline is scored on the new noisy test set without retraining
    best = out / "cells" / "baseline" / "train" / "best.pt"
    trained = best.stat().st_mtime_ns
    res3 = noise_study(ds, out, dataclasses.replace(opts, noises=["gaussian=20,40"]))
    assert res3.skipped == ["baseline", "mixed_gaussian20"] and not res3.failed
    assert best.stat().st_mtime_ns == trained
    assert set(res3.records[0]["metrics"]) == {"val", "test", "test_gaussian20", "test_gaussian40"}
    base40 = res3.table[(res3.table.setting == "baseline") & (res3.table.level == 40.0)]
    assert len(base40) == 1 and base40.test_noisy_dice.notna().all()


def test_grid_cli_seed004_table_and_broken_encoder(tiny, tmp_path):
    import segmentation_models_pytorch as smp

    out = tmp_path / "grid"
    args = ["experiment", "grid", *_common(tiny, out), "--archs", "fpn", "--encoders", "mobilenet_v2,nope",
            "--augment", "both", "--no-speed"]
    res = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    recs = _records(out)
    assert {k: r["status"] for k, r in recs.items()} == {
        "fpn_mobilenet_v2_noaug": "ok", "fpn_mobilenet_v2_aug": "ok", "fpn_nope_noaug": "failed", "fpn_nope_aug": "failed"}
    assert recs["fpn_nope_aug"]["reason"].startswith("unknown encoder 'nope'")
    cfg_aug = (out / "cells" / "fpn_mobilenet_v2_aug" / "train" / "config.yaml").read_text()
    assert "shift_limit: 0.2" in cfg_aug and "enabled: true" in cfg_aug
    assert "enabled: false" in (out / "cells" / "fpn_mobilenet_v2_noaug" / "train" / "config.yaml").read_text()
    df = pd.read_csv(out / "results.csv")
    assert list(zip(df.arch, df.encoder)) == [("fpn", "mobilenet_v2"), ("fpn", "nope")]
    for tag in ("initial", "augmented"):
        for m in ("accuracy", "iou", "recall", "dice"):
            assert f"{tag}_{m}" in df and f"{tag}_{m}_lo" in df
    row = df.iloc[0]
    want = sum(p.numel() for p in smp.FPN(encoder_name="mobilenet_v2", encoder_weights=None, in_channels=1,
                                          classes=1).parameters())
    assert row.params_m == pytest.approx(want / 1e6, abs=1e-3)
    assert row.gflops > 0 and np.isnan(row.fps_int8)
    md = (out / "results.md").read_text()
    assert ("| Architecture | Encoder | Accuracy (initial) | Accuracy (augmented) | mIoU (initial) | mIoU (augmented) "
            "| Recall (initial) | Recall (augmented) | Dice (initial) | Dice (augmented) | Params (M) | GFLOPs |") in md
    assert "`fpn_nope_noaug`: unknown encoder" in md
    res = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 0 and res.output.count("finished earlier") >= 2


def test_every_cell_broken_exits_non_zero(tiny, tmp_path):
    res = CliRunner().invoke(app, ["experiment", "grid", *_common(tiny, tmp_path / "g"), "--archs", "fpn",
                                   "--encoders", "nope", "--augment", "off", "--no-speed"])
    assert res.exit_code != 0 and "1 of 1 cells failed" in res.output


def test_time_budget_stops_training_after_an_epoch(tiny, tmp_path):
    from sonoseg.config import load_config
    from sonoseg.train.options import RunOptions
    from sonoseg.train.trainer import train

    ds, split, cfg = tiny
    c = load_config(cfg, [f"data.root={ds}", f"data.split_file={split}", f"data.cache_dir={tmp_path / 'c'}",
                          "train.epochs=3", "train.threads=1"])
    r = train(c, RunOptions(out=tmp_path, name="t", show_progress=False, time_limit_s=1e-6), log=lambda m: None)
    assert r.epochs_run == 1 and r.stopped_early


def test_pareto_front():
    from sonoseg.experiments.grid import pareto_front

    pts = [(10, 0.8), (20, 0.7), (15, 0.6), (5, 0.85), (20, 0.65)]
    assert pareto_front(pts) == [3, 0, 1]


@pytest.mark.slow
def test_grid_times_the_int8_network(tiny, tmp_path):
    from sonoseg.experiments import GridOptions, grid_study

    ds, split, cfg = tiny
    res = grid_study(ds, tmp_path / "g", GridOptions(archs=["fpn"], encoders=["mobilenet_v2"], augment="both",
                                                     split_file=split, config=cfg, budget="epochs=1,size=64", threads=1,
                                                     n_boot=50, reports=False, speed_iters=5, log=lambda m: None))
    extras = [r["extra"] for r in res.records]
    assert extras[0]["fps_status"] == "ok" and extras[0]["fps_int8"] > 0
    assert extras[1]["fps_int8"] == extras[0]["fps_int8"]  # timed once per network
    assert (tmp_path / "g" / "pareto.png").is_file()


def test_sizes_counts_or_fractions():
    from sonoseg.errors import ConfigError
    from sonoseg.experiments.size import resolve_sizes

    assert resolve_sizes([5, 10, 105], 400) == [("5", 5), ("10", 10), ("105", 105)]
    assert resolve_sizes([0.1, 0.12, 0.5, 1.0], 20) == [("0.1", 2), ("0.5", 10), ("1", 20)]  # 0.12 -> 2 again
    for bad in ([0, 5], [2.5, 10]):
        with pytest.raises(ConfigError):
            resolve_sizes(bad, 100)


def test_noise_cli_refuses_bad_settings_and_levels_in_one_line(tiny, tmp_path):
    for extra, words in ((["--settings", "baseline,nope"], "unknown setting(s) nope"),
                         (["--noise", "pink=3"], "unknown noise 'pink'"), (["--noise", "gaussian=-1"], "level > 0")):
        res = CliRunner().invoke(app, ["experiment", "noise", *_common(tiny, tmp_path / "n"), *extra])
        assert res.exit_code == 2 and words in res.output and "Traceback" not in res.output, res.output


def test_study_options_refuse_bad_values_when_made():
    """Every study's knobs are checked in one place (sonoseg.experiments.options), before any cell runs."""
    from sonoseg.errors import ConfigError
    from sonoseg.experiments import Budget, GridOptions, Noise, NoiseOptions, SizeOptions, StudyOptions

    o = NoiseOptions(budget="epochs=2,size=64", overrides=["train.lr=0.01"], noises=["gaussian=5,5", Noise("speckle", 3.0)])
    assert o.budget == Budget(epochs=2, size=(64, 64)) and o.overrides == ("train.lr=0.01",)
    assert o.noises == (Noise("speckle", 3.0), Noise("gaussian", 5.0)) and NoiseOptions().noises is None
    assert SizeOptions(sizes=[0.5, 1]).sizes == (0.5, 1) and GridOptions(archs=["fpn"]).encoders == ("resnet18", "efficientnet-b0", "mobilenet_v2")
    for make, words in ((lambda: StudyOptions(budget="epochs=0"), "epochs >= 1"),
                        (lambda: StudyOptions(threads=0), "threads 0"),
                        (lambda: StudyOptions(overrides="train.lr=1"), "list of key=value"),
                        (lambda: NoiseOptions(settings=["nope"]), "unknown setting(s) nope"),
                        (lambda: NoiseOptions(noises=["pink=3"]), "unknown noise 'pink'"),
                        (lambda: SizeOptions(seeds=[]), "at least one seed"),
                        (lambda: SizeOptions(sizes=[2.5, 10]), "not a mix"),
                        (lambda: GridOptions(augment="maybe"), "use both, on or off"),
                        (lambda: GridOptions(encoders=[]), "at least one architecture")):
        with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
            make()
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.threads = 2  # type: ignore[misc]
