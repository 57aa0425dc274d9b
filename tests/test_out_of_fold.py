"""Out-of-fold evaluation of a two-source cross-validation run (sonoseg.evaluate.out_of_fold,
`sonoseg evaluate --cv`): every train+val image is scored exactly once, by the fold model that held it out,
and the pooled figures are the per-image figures of the folds, pooled."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory):
    from typer.testing import CliRunner

    from sonoseg.cli.main import app
    from sonoseg.data.phantom import write_phantom_dataset

    tmp = tmp_path_factory.mktemp("oof")
    a = write_phantom_dataset(tmp / "site_a", n=12, size=(64, 64), seed=3, classes=("normal", "benign", "malignant"))
    b = write_phantom_dataset(tmp / "site_b", n=12, size=(64, 64), seed=4, classes=("normal", "benign", "malignant"))
    res = CliRunner().invoke(app, [
        "train", str(a), str(b), "--arch", "fpn", "--encoder", "mobilenet_v2", "--epochs", "1", "--folds", "2",
        "--out", str(tmp / "runs"), "--name", "cv", "--no-progress", "--set", "preprocess.size=[64, 64]",
        "--set", "model.classification={dropout: 0.0}",
        "--set", "train.threads=1", "--set", "data.batch_size=4", "--set", f"data.cache_dir={tmp / 'cache'}",
    ])
    assert res.exit_code == 0, res.output
    return tmp, (a, b), tmp / "runs" / "cv"


def test_each_image_is_scored_once_by_the_fold_that_held_it_out(cv_run):
    from typer.testing import CliRunner

    from sonoseg.cli.main import app

    tmp, (a, b), cv = cv_run
    out = tmp / "oof"
    res = CliRunner().invoke(app, ["evaluate", str(a), str(b), "--cv", str(cv), "--out", str(out), "--backend", "torch",
                                   "--threads", "1", "--n-boot", "50", "--no-progress"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for site in (a, b):
        pooled = pd.read_csv(out / site.name / "per_image.csv", dtype={"stem": str})
        # every train+val image of the site exactly once (the split's test part is never touched)
        val_ids = [i for k in (0, 1) for i in json.loads((cv / f"fold-{k}" / "samples.json").read_text())["val"]]
        stems = sorted(i.split("/", 1)[1] for i in val_ids if i.startswith(site.name + "/"))
        assert sorted(pooled["stem"]) == stems and len(set(stems)) == len(stems) > 0
        for fold in (0, 1):
            held_out = [i.split("/", 1)[1] for i in json.loads((cv / f"fold-{fold}" / "samples.json").read_text())["val"]
                        if i.startswith(site.name + "/")]
            assert sorted(pooled.loc[pooled["fold"] == fold, "stem"]) == sorted(held_out)
            one = pd.read_csv(out / f"fold-{fold}" / site.name / "per_image.csv", dtype={"stem": str})
            assert sorted(one["stem"]) == sorted(held_out)  # that fold's model scored only its own val images
        # pooled Dice = mean of the folds' per-image Dice over lesion images, computed here from their tables
        per_fold = pd.concat([pd.read_csv(out / f"fold-{k}" / site.name / "per_image.csv") for k in (0, 1)])
        expect = per_fold.loc[~per_fold["gt_empty"].astype(bool), "dice"].mean()
        by_stem = per_fold.assign(stem=per_fold["stem"].astype(str)).set_index("stem")["dice"]
        assert pooled.set_index("stem")["dice"].sort_index().equals(by_stem.sort_index())  # row for row
        summary = json.loads((out / "per_source.json").read_text())["sources"][site.name]
        assert summary["dice"] == pytest.approx(expect) and summary["n_images"] == len(stems)
        assert 0.0 <= summary["balanced_accuracy"] <= 1.0
        cls = pd.read_csv(out / site.name / "per_image_class.csv", dtype={"stem": str})
        assert sorted(cls["stem"]) == stems and {"p_benign", "p_malignant", "p_normal", "lesion_found"} <= set(cls.columns)
    assert "out of fold (2 folds) per source" in (out / "per_source.md").read_text()


def test_cv_refuses_a_model_a_split_and_an_unfinished_run(cv_run, tmp_path):
    from typer.testing import CliRunner

    from sonoseg.cli.main import app

    tmp, (a, _), cv = cv_run
    res = CliRunner().invoke(app, ["evaluate", str(a), "--cv", str(cv), "--model", "fast", "--out", str(tmp_path / "x")])
    assert res.exit_code != 0 and "drop --model" in res.output
    res = CliRunner().invoke(app, ["evaluate", str(a), "--cv", str(cv), "--split", "val", "--out", str(tmp_path / "x")])
    assert res.exit_code != 0 and "--split" in res.output  # an explicit split is refused, not silently ignored
    cut = tmp_path / "cut"
    (cut / "fold-0").mkdir(parents=True)
    res = CliRunner().invoke(app, ["evaluate", str(a), "--cv", str(cut), "--out", str(tmp_path / "y")])
    assert res.exit_code != 0 and "fold not finished" in res.output


def test_folds_packaged_as_they_ship_stay_a_cv_run_and_ensemble_without_loss(cv_run, tmp_path):
    """scripts/package_cv_folds.py: every fold's best.pt stored int8 per output channel (within half a step of
    its fp32 weights), the fold's split kept, so `evaluate --cv` accepts it; the ensemble of the packaged
    folds stored int8 again keeps their weights (re-quantising int8-representable weights changes nothing)."""
    import importlib.util

    import numpy as np
    import torch

    from sonoseg.evaluate.out_of_fold import fold_dirs
    from sonoseg.models.checkpoint import INT8_LEVELS, INT8_STORAGE, load_checkpoint
    from sonoseg.models.packaging import ShipOptions, ship_checkpoint
    from sonoseg.train.ensemble import ensemble_checkpoints

    _, _, cv = cv_run
    spec = importlib.util.spec_from_file_location("pcf", Path(__file__).parents[1] / "scripts" / "package_cv_folds.py")
    pcf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pcf)
    out = tmp_path / "cv_int8"
    assert pcf.main([str(cv), str(out)]) == 0
    assert [f.name for f in fold_dirs(out)] == ["fold-0", "fold-1"]
    for k in (0, 1):
        raw = torch.load(out / f"fold-{k}" / "best.pt", map_location="cpu", weights_only=False)
        assert raw["weight_storage"] == INT8_STORAGE and "optimizer_state" not in raw
        assert (out / f"fold-{k}" / "samples.json").read_bytes() == (cv / f"fold-{k}" / "samples.json").read_bytes()
        got = load_checkpoint(out / f"fold-{k}" / "best.pt")["model_state"]
        ref = load_checkpoint(cv / f"fold-{k}" / "best.pt")["model_state"]
        convs = [n for n, w in ref.items() if w.ndim == 4 and w.numel() >= 256]  # smaller ones are kept fp16
        assert convs and set(got) == set(ref)
        for n in convs:  # per output channel: error at most half of that channel's step max|w| / INT8_LEVELS
            step = ref[n].abs().amax(dim=(1, 2, 3), keepdim=True) / INT8_LEVELS
            assert torch.all((got[n] - ref[n]).abs() <= step / 2 + 1e-6), n
        assert any(not torch.equal(got[n], ref[n]) for n in convs)  # really stored int8, not copied
    ens = ensemble_checkpoints([out / "fold-0" / "best.pt", out / "fold-1" / "best.pt"], tmp_path / "ens.pt")
    again = ship_checkpoint(ens, tmp_path / "ens_int8.pt", ShipOptions(storage="int8"))
    a, b = load_checkpoint(ens)["model_state"], load_checkpoint(again)["model_state"]
    assert max(float((a[n].float() - b[n].float()).abs().max()) for n in a if a[n].is_floating_point()) < 1e-6
    assert np.isclose(again.stat().st_size, 2 * (out / "fold-0" / "best.pt").stat().st_size, rtol=0.2)
    cut = tmp_path / "cut"  # an unfinished run: one line naming the fold, nothing written
    (cut / "fold-0").mkdir(parents=True)
    with pytest.raises(SystemExit, match=r"^error: .*fold-0: fold not finished"):
        pcf.main([str(cut), str(tmp_path / "cut_int8")])
    assert not (tmp_path / "cut_int8").exists()


def test_finished_folds_packaged_mid_run_continue_the_run_on_another_machine(cv_run, tmp_path):
    """A CV run outlives a session's machine: `package_cv_folds.py --finished-only` keeps the folds that finished
    (int8-stored, small enough to commit) with the run's config; a copy of that folder resumes with
    `--folds K --resume`, keeps those folds untrained, trains the missing one on the same split, and packaging
    again adds it without rewriting the kept fold."""
    import importlib.util
    import shutil

    from sonoseg.errors import ConfigError
    from sonoseg.evaluate.out_of_fold import fold_dirs
    from sonoseg.train.kfold import train_kfold

    _, _, cv = cv_run
    spec = importlib.util.spec_from_file_location("pcf", Path(__file__).parents[1] / "scripts" / "package_cv_folds.py")
    pcf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pcf)
    machine_1 = tmp_path / "machine_1"  # fold 1 had not finished when the session ended
    shutil.copytree(cv, machine_1)
    shutil.rmtree(machine_1 / "fold-1")
    kept = tmp_path / "kept"
    assert pcf.main([str(machine_1), str(kept), "--finished-only"]) == 0
    assert sorted(p.name for p in kept.iterdir()) == ["cv_config.yaml", "cv_folds.json", "fold-0"]
    with pytest.raises(ConfigError, match=r"1 of its 2 folds are there"):  # not yet a run to score or ensemble
        fold_dirs(kept)
    stamp = (kept / "fold-0" / "best.pt").stat().st_mtime_ns

    machine_2 = tmp_path / "machine_2"
    shutil.copytree(kept, machine_2)
    said: list[str] = []
    train_kfold(None, k=2, resume=machine_2, log=said.append, show_progress=False)
    assert "fold 1/2: finished earlier, kept" in said and "fold 2/2" in said
    assert (machine_2 / "fold-0" / "best.pt").read_bytes() == (kept / "fold-0" / "best.pt").read_bytes()
    assert (json.loads((machine_2 / "fold-1" / "samples.json").read_text())["val"]
            == json.loads((cv / "fold-1" / "samples.json").read_text())["val"])
    assert pcf.main([str(machine_2), str(kept), "--finished-only"]) == 0
    assert (kept / "fold-0" / "best.pt").stat().st_mtime_ns == stamp
    assert [f.name for f in fold_dirs(kept)] == ["fold-0", "fold-1"]
    with pytest.raises(SystemExit, match=r"^error: .*no finished fold-<i> folders"):
        pcf.main([str(tmp_path / "empty"), str(tmp_path / "x"), "--finished-only"])
