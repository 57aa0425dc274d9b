"""Shipping a checkpoint (sonoseg.models.packaging): what a shipped file holds, and what it must not."""

from __future__ import annotations

import pytest
import torch

from sonoseg.config import load_config
from sonoseg.models import create_model_from_config
from sonoseg.models.checkpoint import INT8_STORAGE, load_checkpoint, load_model, save_checkpoint
from sonoseg.models.packaging import ShipOptions, ship_checkpoint


@pytest.fixture()
def trained_like(tmp_path):
    """A checkpoint as the trainer writes it: machine-local paths, a teacher, optimiser and RNG state."""
    cfg = load_config(None, ["model.name=unet", "model.params={base_channels: 8, depth: 2}", "preprocess.size=[32, 32]",
                             f"data.root={tmp_path / 'my_data'}", f"data.cache_dir={tmp_path / 'cache'}",
                             f"data.split_file={tmp_path / 'split.csv'}", "train.device=cuda",
                             f"train.distill.teacher={tmp_path / 'teacher.pt'}"])
    torch.manual_seed(0)
    model = create_model_from_config(cfg.model)
    opt = torch.optim.AdamW(model.parameters())
    src = save_checkpoint(tmp_path / "last.pt", config=cfg, model_state=model.state_dict(), epoch=7, best_score=0.5,
                          metrics={"val_dice": 0.8}, optimizer_state=opt.state_dict(), rng_state={"seed": 1},
                          history=[{"epoch": 1}])
    return src, model


def _no_local_paths(payload, tmp_path):
    assert str(tmp_path) not in repr(payload["config"]), "a machine-local path was shipped"


@pytest.mark.parametrize("storage", ["fp16", "int8"])
def test_shipped_file_drops_training_state_and_local_paths_and_keeps_the_weights(trained_like, tmp_path, storage):
    src, model = trained_like
    opts = ShipOptions(version="mine v1", storage=storage, split_file="configs/my_split.csv")
    dst = ship_checkpoint(src, tmp_path / "ship" / "mine.pt", opts, metrics={"test": {"dice": 0.7}})
    raw = torch.load(dst, map_location="cpu", weights_only=True)  # plain tensors and containers only
    assert not {"optimizer_state", "rng_state", "history", "scheduler_state"} & raw.keys()
    assert raw["epoch"] == 7 and raw["best_score"] == 0.5
    assert raw["metrics"] == {"val_dice": 0.8, "test": {"dice": 0.7}}
    data, train = raw["config"]["data"], raw["config"]["train"]
    assert data["root"] is None and data["cache_dir"] is None and data["split_file"] == "configs/my_split.csv"
    assert train["device"] == "auto" and train["distill"]["teacher"] is None  # a local teacher path never ships
    assert raw["config"]["model"]["version"] == "mine v1"
    _no_local_paths(raw, tmp_path)

    ref = model.state_dict()
    got = load_checkpoint(dst)["model_state"]
    if storage == "int8":
        assert raw["weight_storage"] == INT8_STORAGE and raw["weight_scales"]
        assert all(raw["model_state"][k].dtype == torch.int8 for k in raw["weight_scales"])
        # per output channel: error at most half a step of that channel's scale (max |w| / 126)
        for k, w in ref.items():
            if k in raw["weight_scales"]:
                step = w.abs().flatten(1).amax(1) / 126
                err = (got[k].float() - w).abs().flatten(1).amax(1)
                assert torch.all(err <= step / 2 + 1e-7), k
    else:
        assert all(v.dtype == torch.float16 for v in raw["model_state"].values() if v.is_floating_point())
        for k, w in ref.items():
            if w.is_floating_point():
                assert torch.allclose(got[k].float(), w, rtol=1e-3, atol=1e-4), k
    net, cfg = load_model(dst)  # it still builds and runs
    assert net(torch.zeros(1, cfg.model.in_channels, 32, 32)).shape[-2:] == (32, 32)


def test_reshipping_keeps_fp16_weights_byte_for_byte_and_the_recipe(trained_like, tmp_path):
    src, _ = trained_like
    recipe = {"train": {"epochs": 3}}
    first = ship_checkpoint(src, tmp_path / "a.pt", ShipOptions(version="v1", recipe=recipe))
    second = ship_checkpoint(first, tmp_path / "b.pt", ShipOptions(version="v1"))
    a, b = (torch.load(p, map_location="cpu", weights_only=True) for p in (first, second))
    assert b["recipe"] == recipe  # kept from the source when not given again
    assert all(torch.equal(a["model_state"][k], b["model_state"][k]) for k in a["model_state"])


def test_a_distilled_model_records_the_shipped_teacher_it_names(trained_like, tmp_path):
    src, _ = trained_like
    shipped = "src/sonoseg/assets/models/breast_accurate.pt"
    raw = torch.load(ship_checkpoint(src, tmp_path / "s.pt", ShipOptions(teacher=shipped)), map_location="cpu",
                     weights_only=True)
    assert raw["config"]["train"]["distill"]["teacher"] == shipped
    _no_local_paths(raw, tmp_path)


def test_a_multi_source_model_keeps_relative_provenance_and_drops_absolute_paths(tmp_path):
    sources = (f"data.sources=[{{root: {tmp_path}/busi, split_file: {tmp_path}/busi_split.csv}}, "
               "{root: ../shared/data/bus_uclm, split_file: configs/bus_uclm_split.csv}]")
    cfg = load_config(None, ["model.name=unet", "model.params={base_channels: 4, depth: 2}", "preprocess.size=[32, 32]",
                             sources])
    src = save_checkpoint(tmp_path / "m.pt", config=cfg, model_state=create_model_from_config(cfg.model).state_dict())
    raw = torch.load(ship_checkpoint(src, tmp_path / "s.pt", ShipOptions()), map_location="cpu", weights_only=True)
    got = [(s["root"], s["split_file"]) for s in raw["config"]["data"]["sources"]]
    assert got == [("busi", None), ("../shared/data/bus_uclm", "configs/bus_uclm_split.csv")]
    _no_local_paths(raw, tmp_path)


def test_int8_fp32_layers_and_test_time_flips_are_recorded_and_load_back(trained_like, tmp_path):
    src, _ = trained_like
    opts = ShipOptions(keep_float=["/model/encoder/conv_stem/"], tta=["h"])
    dst = ship_checkpoint(src, tmp_path / "s.pt", opts)
    _, cfg = load_model(dst)  # validated by the config schema on the way back
    assert cfg.model.int8_keep_float == ["/model/encoder/conv_stem/"] and cfg.postprocess.tta == ["h"]
    _, kept = load_model(ship_checkpoint(dst, tmp_path / "again.pt", ShipOptions()))
    assert kept.postprocess.tta == ["h"] and kept.model.int8_keep_float == ["/model/encoder/conv_stem/"]
