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


def test_cv_refuses_a_model_and_an_unfinished_run(cv_run, tmp_path):
    from typer.testing import CliRunner

    from sonoseg.cli.main import app

    tmp, (a, _), cv = cv_run
    res = CliRunner().invoke(app, ["evaluate", str(a), "--cv", str(cv), "--model", "fast", "--out", str(tmp_path / "x")])
    assert res.exit_code != 0 and "drop --model" in res.output
    cut = tmp_path / "cut"
    (cut / "fold-0").mkdir(parents=True)
    res = CliRunner().invoke(app, ["evaluate", str(a), "--cv", str(cut), "--out", str(tmp_path / "y")])
    assert res.exit_code != 0 and "fold not finished" in res.output
