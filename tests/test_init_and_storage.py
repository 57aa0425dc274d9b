"""Partial initialisation from another checkpoint (new decoder, kept encoder) and int8 weight storage."""

from __future__ import annotations

import pytest
import torch

from sonoseg.config import load_config
from sonoseg.errors import InputError
from sonoseg.models import create_model_from_config
from sonoseg.train.checkpoint import (INT8_LEVELS, decode_int8_state, int8_state, load_checkpoint, load_model,
                                      save_checkpoint)
from sonoseg.train.init_weights import init_from_checkpoint


def _fpn(pyramid: int):
    cfg = load_config(None, ["model.name=fpn", "model.encoder=mobilenet_v2", "model.encoder_weights=null",
                             f"model.params={{decoder_pyramid_channels: {pyramid}, decoder_segmentation_channels: 32}}",
                             "preprocess.size=[64, 64]"])
    torch.manual_seed(pyramid)
    return cfg, create_model_from_config(cfg.model, pretrained=False)


def test_partial_init_keeps_matching_tensors_and_leaves_the_new_decoder_fresh(tmp_path):
    cfg64, wide = _fpn(64)
    ckpt = save_checkpoint(tmp_path / "wide.pt", config=cfg64, model_state=wide.state_dict())
    _, narrow = _fpn(16)
    fresh_before = {k: v.clone() for k, v in narrow.state_dict().items()}
    with pytest.raises(InputError, match="partial"):  # whole initialisation refuses another architecture
        init_from_checkpoint(narrow, ckpt)
    report = init_from_checkpoint(narrow, ckpt, partial=True)
    after, src = narrow.state_dict(), wide.state_dict()
    enc = [k for k in after if ".encoder." in k or k.startswith("encoder.")]
    assert enc and all(torch.equal(after[k], src[k]) for k in enc)
    changed = [k for k in after if k not in report.fresh]
    assert report.loaded == len(changed) and report.total == len(after)
    # every fresh tensor is a decoder tensor whose shape differs from the wide model's, and is untouched
    assert report.fresh and all("decoder" in k for k in report.fresh)
    assert all(tuple(src[k].shape) != tuple(after[k].shape) for k in report.fresh if k in src)
    assert all(torch.equal(after[k], fresh_before[k]) for k in report.fresh)
    assert "fresh" in report.summary() and f"{report.loaded}/{report.total}" in report.summary()


def test_partial_init_with_nothing_in_common_is_an_error(tmp_path):
    cfg = load_config(None, ["model.name=unet", "model.params={base_channels: 8, depth: 2}"])
    unet = create_model_from_config(cfg.model, pretrained=False)
    ckpt = save_checkpoint(tmp_path / "unet.pt", config=cfg, model_state=unet.state_dict())
    _, fpn = _fpn(16)
    with pytest.raises(InputError, match="no tensor"):
        init_from_checkpoint(fpn, ckpt, partial=True)


def test_int8_storage_round_trip_is_per_channel_and_within_half_a_step():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 4, 3, 3, generator=g) * torch.logspace(-3, 1, 8).reshape(8, 1, 1, 1)  # channels 10^4 apart
    state = {"conv.weight": w, "conv.bias": torch.randn(8, generator=g), "bn.num_batches_tracked": torch.tensor(5),
             "tiny.weight": torch.randn(2, 3, generator=g)}
    q, scales = int8_state(state)
    assert q["conv.weight"].dtype == torch.int8 and set(scales) == {"conv.weight"}
    assert q["conv.bias"].dtype == torch.float16 and q["tiny.weight"].dtype == torch.float16  # too small to pay
    assert q["bn.num_batches_tracked"].dtype == torch.int64
    d = decode_int8_state(q, scales)
    per_ch_max = w.abs().amax(dim=(1, 2, 3))
    err = (d["conv.weight"] - w).abs().amax(dim=(1, 2, 3))
    assert torch.all(err <= per_ch_max / INT8_LEVELS / 2 + 1e-9)  # rounding error of its own channel's scale only
    assert torch.allclose(d["conv.weight"].abs().amax(dim=(1, 2, 3)), per_ch_max, rtol=1e-6)  # extremes exact


def test_int8_storage_does_not_put_7_bit_requantisation_on_rounding_ties():
    """Without VNNI, int8 inference re-quantises weights to 7 bits (scale = max / 63.5). Stored with
    +-127 levels every odd value would sit on a tie of that grid (error doubled, measured on v3); the
    stored grid must not line up with it."""
    w = torch.randn(64, 32, 3, 3, generator=torch.Generator().manual_seed(3))
    q, scales = int8_state({"w": w})
    d = decode_int8_state(q, scales)["w"].double().reshape(64, -1)
    x = d / (d.abs().amax(dim=1, keepdim=True) / 63.5)
    near_tie = ((x - x.floor()) - 0.5).abs() < 0.01
    assert near_tie.double().mean() < 0.1  # +-127 storage: about half of all values
    q127, s127 = int8_state({"w": w}, levels=127)
    d127 = decode_int8_state(q127, s127)["w"].double().reshape(64, -1)
    x127 = d127 / (d127.abs().amax(dim=1, keepdim=True) / 63.5)
    assert (((x127 - x127.floor()) - 0.5).abs() < 0.01).double().mean() > 0.4  # the case the test guards


def test_int8_stored_checkpoint_loads_as_fp32_and_predicts_like_the_original(tmp_path):
    cfg, model = _fpn(32)
    model.eval()
    q, scales = int8_state(model.state_dict())
    plain = save_checkpoint(tmp_path / "plain.pt", config=cfg, model_state=model.state_dict())
    packed = save_checkpoint(tmp_path / "int8.pt", config=cfg, model_state=q, weight_storage="int8-per-channel",
                             weight_scales=scales)
    assert packed.stat().st_size < 0.4 * plain.stat().st_size
    payload = load_checkpoint(packed)
    assert "weight_storage" not in payload and all(v.dtype != torch.int8 for v in payload["model_state"].values())
    loaded, _ = load_model(packed)
    x = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1] > 0.999


def test_unknown_weight_storage_is_refused(tmp_path):
    cfg, model = _fpn(16)
    p = save_checkpoint(tmp_path / "odd.pt", config=cfg, model_state=model.state_dict(), weight_storage="int4-magic")
    with pytest.raises(InputError, match="int4-magic"):
        load_checkpoint(p)


def test_shipped_v3_is_int8_stored_and_under_the_5_mib_line():
    """v3 is int8-stored; the breast tiers are fp16 (their validation figures are those weights') and
    under issue 22's 25 MB each (tests/test_model_tiers.py)."""
    from sonoseg.models.shipped import shipped_model_path

    path = shipped_model_path("v3")
    assert path.stat().st_size < 5 * 2**20
    raw = torch.load(path, map_location="cpu", weights_only=True)  # plain tensors only: weights_only loads it
    assert raw["weight_storage"] == "int8-per-channel" and raw["weight_scales"]
    assert all(raw["model_state"][k].dtype == torch.int8 for k in raw["weight_scales"])
