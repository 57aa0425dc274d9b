"""Model factory: every architecture x encoder on odd-sized inputs, the classic U-Net against a
hand parameter count, padding against numpy, ONNX with dynamic H/W, local-only weights."""

from __future__ import annotations

import socket
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sonoseg.config import ModelConfig
from sonoseg.errors import ConfigError, InputError
from sonoseg.models import (
    PadToMultiple,
    UNet,
    count_parameters,
    create_model,
    create_model_from_config,
    list_encoders,
    list_models,
    model_summary,
    unwrap,
)
from sonoseg.models.smp_models import SMP_ARCHITECTURES, SUPPORTED_ENCODERS, validate_encoder
from sonoseg.models.weights import adapt_first_conv

SMP_ARCHS = sorted(SMP_ARCHITECTURES)
ODD = (67, 93)


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def no_network(monkeypatch):
    """Any socket connection attempt fails the test (weights must never be downloaded)."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def forward_backward(model: nn.Module, classes: int, size=ODD, batch: int = 2) -> None:
    model.train()
    x = torch.randn(batch, 1, *size)
    y = model(x)
    assert y.shape == (batch, classes, *size)
    y.float().square().mean().backward()
    # unused encoder stages (PSPNet uses 3 of 5; EfficientNet's classifier conv) get no grad
    params = list(model.parameters())
    grads = [p.grad for p in params if p.grad is not None]
    assert all(torch.isfinite(g).all() for g in grads)
    assert params[-1].grad is not None and params[-1].grad.abs().sum() > 0  # segmentation head
    first = next(p for p in model.parameters() if p.ndim == 4)
    assert first.grad.abs().sum() > 0  # the gradient reaches the input layer


# ------------------------------------------------------------------ registry


def test_registry_lists_all_architectures_and_encoders():
    assert set(list_models()) == {"unet", "ensemble", *SMP_ARCHS, "unet3d", "dynunet", "segresnet"}
    assert set(SMP_ARCHS) == {
        "unet_smp", "unetplusplus", "manet", "linknet", "fpn", "pspnet", "pan", "deeplabv3",
        "deeplabv3plus",
    }
    enc = list_encoders()
    for name in ["resnet18", "resnet34", "resnet50", "resnet101", "mobilenet_v2"]:
        assert name in enc
    assert [e for e in enc if e.startswith("efficientnet-")] == [f"efficientnet-b{i}" for i in range(8)]


def test_all_supported_encoder_names_exist_in_smp():
    from sonoseg._compat import ensure_torchvision

    ensure_torchvision()
    import segmentation_models_pytorch as smp

    known = set(smp.encoders.get_encoder_names())
    for name in SUPPORTED_ENCODERS:
        assert validate_encoder(name) == name
        assert name in known, name


@pytest.mark.parametrize("encoder", ["efficientnet-b1", "resnet50"])
def test_larger_encoders_construct(encoder):
    model = create_model("unet_smp", encoder)
    assert unwrap(model).encoder.output_stride == 32
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 1, 40, 50)).shape == (1, 1, 40, 50)


def test_unknown_encoder_lists_options():
    with pytest.raises(ConfigError) as err:
        create_model("unet_smp", "resnet19")
    msg = str(err.value)
    assert "resnet19" in msg and "resnet18" in msg and "efficientnet-b7" in msg and "mobilenet_v2" in msg


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(name="segnet"), "unknown model"),
        (dict(name="unet", encoder="resnet18"), "no exchangeable encoder"),
        (dict(name="unet", depth=0), "depth"),
        (dict(name="unet", widht=3), "invalid parameters"),
        (dict(name="unet", classes=0), "classes"),
        (dict(name="unet", pad_mode="wrap"), "pad_mode"),
        (dict(name="fpn", aux_params={"classes": 2}), "aux_params"),
        (dict(name="fpn", activation="sigmoid"), "activation"),
        (dict(name="unet_smp", encoder="resnet18", decoder_chanels=(8,)), "unknown parameter.*decoder_channels"),
    ],
)
def test_invalid_requests_raise_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        create_model(**kwargs)


def test_register_custom_model(monkeypatch):
    from sonoseg.models import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # undone after the test

    class Halver(nn.Module):  # needs even H, W: down-samples by 2 and back
        size_multiple = 2

        def __init__(self, in_channels, classes):
            super().__init__()
            self.conv = nn.Conv2d(in_channels, classes, 3, stride=2, padding=1)

        def forward(self, x):
            return F.interpolate(self.conv(x), scale_factor=2.0)

    @registry.register_model("halver")
    def build(encoder, in_channels, classes):
        return Halver(in_channels, classes)

    assert "halver" in list_models()
    with torch.no_grad():
        assert create_model("halver", classes=2)(torch.randn(1, 1, 7, 9)).shape == (1, 2, 7, 9)

    @registry.register_model("broken")
    def build_broken(encoder, in_channels, classes):
        return nn.Identity()

    with pytest.raises(TypeError, match="size_multiple"):
        create_model("broken")


def test_importing_models_and_losses_stays_light():
    import subprocess
    import sys

    code = (
        "import sys, sonoseg.models, sonoseg.train.losses; "
        "print([m for m in ('segmentation_models_pytorch', 'timm', 'monai') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_aliases_resolve():
    assert create_model("UNet++", "mobilenet_v2").spec["name"] == "unetplusplus"


# ------------------------------------------------------------------ smp grid


@pytest.mark.parametrize("encoder", ["resnet18", "mobilenet_v2"])
@pytest.mark.parametrize("arch", SMP_ARCHS)
def test_smp_architecture_odd_input(arch, encoder):
    torch.manual_seed(0)
    forward_backward(create_model(arch, encoder), classes=1)


@pytest.mark.parametrize("arch", ["unet_smp", "deeplabv3plus", "pan"])
def test_smp_efficientnet_b0(arch):
    torch.manual_seed(0)
    forward_backward(create_model(arch, "efficientnet-b0", classes=2), classes=2)


@pytest.mark.parametrize("arch", SMP_ARCHS)
def test_smp_tiny_and_thin_inputs(arch):
    model = create_model(arch, "mobilenet_v2", classes=3).eval()
    with torch.no_grad():
        for size in [(1, 1), (5, 3), (33, 129)]:
            assert model(torch.randn(1, 1, *size)).shape == (1, 3, *size)


def test_smp_kwargs_pass_through():
    m = unwrap(create_model("unet_smp", "resnet18", decoder_channels=(64, 32, 16, 8, 4)))
    assert m.segmentation_head[0].in_channels == 4
    m = unwrap(create_model("fpn", "resnet18", decoder_segmentation_channels=64))
    assert m.segmentation_head[0].in_channels == 64
    m = unwrap(create_model("deeplabv3plus", "resnet18", encoder_output_stride=8))
    assert m.encoder.output_stride == 8


def test_smp_multiple_follows_encoder_stride():
    assert create_model("deeplabv3", "resnet18").multiple == 8
    assert create_model("deeplabv3plus", "resnet18").multiple == 16
    assert create_model("unet_smp", "resnet18").multiple == 32
    assert create_model("unet_smp", "resnet18", encoder_depth=4,
                        decoder_channels=(64, 32, 16, 8)).multiple == 16
    pan = create_model("pan", "resnet18")
    assert (pan.multiple, pan.min_size) == (16, 128)


# ------------------------------------------------------------------ classic U-Net


@pytest.mark.parametrize(
    "bilinear,base,depth,dropout",
    [(False, 16, 4, 0.0), (True, 16, 4, 0.0), (False, 32, 3, 0.2), (True, 32, 3, 0.1), (False, 16, 2, 0.0)],
)
def test_classic_unet_configurations(bilinear, base, depth, dropout):
    torch.manual_seed(0)
    model = create_model("unet", base_channels=base, depth=depth, bilinear=bilinear, dropout=dropout)
    assert model.multiple == 2**depth
    net = unwrap(model)
    assert net.features == [base * 2**i for i in range(depth + 1)]
    assert any(isinstance(m, nn.Dropout2d) for m in net.modules()) == (dropout > 0)
    assert any(isinstance(m, nn.ConvTranspose2d) for m in net.modules()) == (not bilinear)
    forward_backward(model, classes=1)


def test_classic_unet_multiclass_and_rgb():
    model = create_model("unet", in_channels=3, classes=4, base_channels=8, depth=3)
    with torch.no_grad():
        assert model(torch.randn(2, 3, *ODD)).shape == (2, 4, *ODD)


def test_classic_unet_any_size():
    model = create_model("unet", base_channels=8, depth=4).eval()
    with torch.no_grad():
        for size in [(1, 1), (5, 3), (16, 16), (17, 64)]:
            assert model(torch.randn(1, 1, *size)).shape == (1, 1, *size)


def test_classic_unet_dropout_only_active_in_training():
    torch.manual_seed(0)
    model = create_model("unet", base_channels=8, depth=2, dropout=0.5)
    x = torch.randn(2, 1, 32, 32)
    model.train()
    assert not torch.allclose(model(x), model(x))
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def _double_conv(cin, cout):  # two bias-free 3x3 convs + two BatchNorms (weight + bias)
    return 9 * cin * cout + 2 * cout + 9 * cout * cout + 2 * cout


def test_classic_unet_parameter_count_by_hand():
    # base 16, depth 2, 1 -> 1 channel, transposed up-sampling
    expected = (
        _double_conv(1, 16) + _double_conv(16, 32) + _double_conv(32, 64)  # encoder + bottleneck
        + (64 * 32 * 2 * 2 + 32) + _double_conv(32 + 32, 32)  # up 1: ConvT(64->32) + DoubleConv
        + (32 * 16 * 2 * 2 + 16) + _double_conv(16 + 16, 16)  # up 2
        + (16 * 1 + 1)  # 1x1 head
    )
    assert expected == 117_073
    assert count_parameters(create_model("unet", base_channels=16, depth=2)) == expected
    # bilinear: no ConvTranspose, decoder convs see f[i+1] + f[i] channels
    expected_bilinear = (
        _double_conv(1, 16) + _double_conv(16, 32) + _double_conv(32, 64)
        + _double_conv(64 + 32, 32) + _double_conv(32 + 16, 16) + (16 + 1)
    )
    assert count_parameters(create_model("unet", base_channels=16, depth=2, bilinear=True)) == expected_bilinear


def test_classic_unet_matches_seed_pseudocode():
    # seed: features [64,128,256,512], up1 = ConvTranspose2d(512, 256, 2, 2), dec1 = DoubleConv(512, 256)
    net = UNet(in_channels=1, classes=1, base_channels=64, depth=3)
    convs = [m for m in net.inc.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.bias) for c in convs] == [
        (1, 64, (3, 3), None), (64, 64, (3, 3), None)
    ]
    up1 = net.ups[0].up
    assert isinstance(up1, nn.ConvTranspose2d)
    assert (up1.in_channels, up1.out_channels, up1.kernel_size, up1.stride) == (512, 256, (2, 2), (2, 2))
    assert net.ups[0].conv[0].in_channels == 512 and net.ups[0].conv[0].out_channels == 256
    assert isinstance(net.head, nn.Conv2d) and net.head.kernel_size == (1, 1) and net.head.in_channels == 64
    pools = [m for m in net.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 3 and all(p.kernel_size == 2 for p in pools)
    # default = the paper's network: 4 down-samplings and a 1024-channel bottleneck
    assert UNet().features == [64, 128, 256, 512, 1024]


# ------------------------------------------------------------------ padding


class Probe(nn.Module):
    """Identity that remembers what it was given."""

    def forward(self, x):
        self.seen = x.clone()
        return x


@pytest.mark.parametrize("mode,np_mode", [("constant", "constant"), ("replicate", "edge"), ("reflect", "reflect")])
def test_padding_matches_numpy_and_crops_back(mode, np_mode):
    probe = Probe()
    wrap = PadToMultiple(probe, multiple=16, mode=mode)
    x = torch.arange(2 * 1 * 21 * 30, dtype=torch.float32).reshape(2, 1, 21, 30)
    y = wrap(x)
    assert torch.equal(y, x)  # identity network: crop gives back exactly the input
    ph, pw = 32 - 21, 32 - 30  # 11 rows, 2 columns; the odd pixel goes bottom/right
    ref = np.pad(x.numpy(), ((0, 0), (0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)), mode=np_mode)
    np.testing.assert_array_equal(probe.seen.numpy(), ref)


def test_padding_min_size_and_no_op():
    probe = Probe()
    wrap = PadToMultiple(probe, multiple=16, min_size=100)
    assert wrap.min_size == 112  # rounded up to a multiple
    wrap(torch.zeros(1, 1, 5, 130))
    assert probe.seen.shape[-2:] == (112, 144)
    x = torch.randn(1, 1, 112, 128)
    wrap(x)
    assert probe.seen.shape == x.shape


def test_wrapper_equals_network_on_multiple_sizes():
    torch.manual_seed(0)
    model = create_model("unet", base_channels=8, depth=2).eval()
    x = torch.randn(1, 1, 32, 20)
    with torch.no_grad():
        assert torch.equal(model(x), unwrap(model)(x))


def test_onnx_export_keeps_dynamic_height_and_width(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = create_model("unet", base_channels=8, depth=3, classes=2).eval()
    path = tmp_path / "unet.onnx"
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated; dynamo export works too
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (torch.randn(1, 1, 48, 40),), str(path), dynamo=False, input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n", 2: "h", 3: "w"}},
        )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(1, 1, 67, 93), (2, 1, 8, 130)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            ref = model(x).numpy()
        out = sess.run(None, {"image": x.numpy()})[0]
        assert out.shape == ref.shape
        np.testing.assert_allclose(out, ref, atol=1e-4)


def test_jit_trace_of_min_size_path_stays_dynamic():
    torch.manual_seed(0)
    model = create_model("pan", "mobilenet_v2").eval()  # pads to x16 and at least 128
    with warnings.catch_warnings():  # torch.jit.trace deprecation / tracer warnings
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, torch.randn(1, 1, 150, 141))
    for shape in [(1, 1, 37, 90), (1, 1, 200, 64)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            torch.testing.assert_close(traced(x), model(x), atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------ config / summary


def test_create_model_from_config():
    cfg = ModelConfig(name="unet", classes=2, params={"base_channels": 8, "depth": 2, "pad_mode": "replicate"})
    model = create_model_from_config(cfg)
    assert model.mode == "replicate"
    assert model.spec == {
        "name": "unet", "encoder": None, "in_channels": 1, "classes": 2,
        "params": {"base_channels": 8, "depth": 2, "pad_mode": "replicate"}, "classification": None,
    }
    with torch.no_grad():
        assert model(torch.randn(1, 1, 30, 31)).shape == (1, 2, 30, 31)
    cfg = ModelConfig(name="linknet", encoder="mobilenet_v2")
    assert create_model_from_config(cfg).spec["encoder"] == "mobilenet_v2"
    assert create_model_from_config(ModelConfig(name="fpn")).spec["encoder"] == "resnet34"


def test_count_parameters_and_summary():
    model = create_model("linknet", "mobilenet_v2")
    n = sum(p.numel() for p in model.parameters())
    assert count_parameters(model) == n
    model.model.encoder.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == n - sum(
        p.numel() for p in model.model.encoder.parameters()
    )
    s = model_summary(model)
    assert "linknet" in s and "mobilenet_v2" in s and f"{n / 1e6:.2f} M" in s


# ------------------------------------------------------------------ weights


def _params(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_encoder_weights_round_trip(tmp_path, no_network):
    torch.manual_seed(1)
    src = unwrap(create_model("unet_smp", "resnet18"))
    path = tmp_path / "enc.pth"
    torch.save(src.encoder.state_dict(), path)
    torch.manual_seed(2)
    dst = unwrap(create_model("unet_smp", "resnet18", encoder_weights=str(path)))
    a, b = _params(src.encoder), _params(dst.encoder)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # only the encoder came from the file
    assert not torch.equal(src.decoder.blocks[0].conv1[0].weight, dst.decoder.blocks[0].conv1[0].weight)


def test_full_smp_model_safetensors_and_checkpoint_dict(tmp_path, no_network):
    from safetensors.torch import save_file

    torch.manual_seed(3)
    src = create_model("fpn", "mobilenet_v2")
    p1 = tmp_path / "fpn.safetensors"
    save_file({k: v.contiguous() for k, v in unwrap(src).state_dict().items()}, str(p1))
    p2 = tmp_path / "ckpt.pt"  # a sonoseg training checkpoint: wrapper keys "model.encoder..."
    torch.save({"epoch": 3, "state_dict": src.state_dict()}, p2)
    for path in (p1, p2):
        # the encoder of a full FPN goes into a different architecture with the same encoder
        dst = create_model("unetplusplus", "mobilenet_v2", encoder_weights=str(path))
        a, b = _params(unwrap(src).encoder), _params(unwrap(dst).encoder)
        assert all(torch.equal(a[k], b[k]) for k in a), path.name


def test_first_conv_adapted_from_rgb(tmp_path):
    torch.manual_seed(4)
    rgb = unwrap(create_model("unet_smp", "resnet18", in_channels=3))
    path = tmp_path / "rgb.pth"
    torch.save(rgb.encoder.state_dict(), path)
    grey = unwrap(create_model("unet_smp", "resnet18", in_channels=1, encoder_weights=str(path)))
    w3 = rgb.encoder.conv1.weight.detach()
    assert torch.allclose(grey.encoder.conv1.weight, w3.sum(dim=1, keepdim=True))
    assert torch.equal(grey.encoder.layer1[0].conv1.weight, rgb.encoder.layer1[0].conv1.weight)
    two = unwrap(create_model("unet_smp", "resnet18", in_channels=2, encoder_weights=str(path)))
    assert torch.allclose(two.encoder.conv1.weight, w3[:, :2] * 1.5)


@pytest.mark.parametrize("in_channels", [1, 2, 4])
def test_adapt_first_conv_matches_smp_patch_first_conv(in_channels):
    from sonoseg._compat import ensure_torchvision

    ensure_torchvision()
    from segmentation_models_pytorch.encoders._utils import patch_first_conv

    torch.manual_seed(5)
    conv = nn.Conv2d(3, 8, 3)
    w = conv.weight.detach().clone()
    holder = nn.Sequential(conv)
    patch_first_conv(holder, new_in_channels=in_channels, pretrained=True)
    assert torch.allclose(adapt_first_conv(w, in_channels), holder[0].weight)


def test_mismatched_weights_are_reported(tmp_path):
    other = unwrap(create_model("unet_smp", "mobilenet_v2"))
    path = tmp_path / "mobilenet.pth"
    torch.save(other.encoder.state_dict(), path)
    with pytest.raises(ConfigError, match="missing .*unexpected"):
        create_model("unet_smp", "resnet18", encoder_weights=str(path))
    with pytest.raises(InputError, match="not found"):
        create_model("unet_smp", "resnet18", encoder_weights=str(tmp_path / "absent.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot read"):
        create_model("unet_smp", "resnet18", encoder_weights=str(tmp_path / "junk.pth"))


def test_imagenet_head_and_missing_bn_counters_tolerated(tmp_path):
    torch.manual_seed(6)
    src = unwrap(create_model("unet_smp", "resnet18", in_channels=3))
    sd = {k: v for k, v in src.encoder.state_dict().items() if not k.endswith("num_batches_tracked")}
    sd["fc.weight"], sd["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)  # torchvision file
    path = tmp_path / "resnet18-legacy.pth"
    torch.save(sd, path)
    dst = unwrap(create_model("unet_smp", "resnet18", in_channels=3, encoder_weights=str(path)))
    assert torch.equal(dst.encoder.layer4[1].conv2.weight, src.encoder.layer4[1].conv2.weight)


def test_named_weights_resolved_only_from_local_cache(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("SONOSEG_WEIGHTS_DIR", raising=False)
    with pytest.raises(ConfigError) as err:
        create_model("unet_smp", "resnet18", encoder_weights="imagenet")
    msg = str(err.value)
    assert "never downloads" in msg and str(tmp_path / "torch" / "hub" / "checkpoints") in msg

    torch.manual_seed(7)
    src = unwrap(create_model("unet_smp", "resnet18", in_channels=3))
    ckpt = tmp_path / "torch" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.save(src.encoder.state_dict(), ckpt / "resnet18-f37072fd.pth")  # torchvision's file name
    dst = unwrap(create_model("unet_smp", "resnet18", in_channels=1, encoder_weights="imagenet"))
    assert torch.allclose(dst.encoder.conv1.weight, src.encoder.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(dst.encoder.layer2[0].conv1.weight, src.encoder.layer2[0].conv1.weight)


def test_named_weights_from_huggingface_cache_layout(tmp_path, monkeypatch, no_network):
    from safetensors.torch import save_file
    from sonoseg.models.weights import _smp_settings

    settings = _smp_settings("mobilenet_v2")["imagenet"]
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    snap = tmp_path / "hf" / "models--smp-hub--mobilenet_v2.imagenet" / "snapshots" / settings["revision"]
    snap.mkdir(parents=True)
    torch.manual_seed(8)
    src = unwrap(create_model("linknet", "mobilenet_v2", in_channels=3))
    save_file({k: v.contiguous() for k, v in src.encoder.state_dict().items()}, str(snap / "model.safetensors"))
    dst = unwrap(create_model("linknet", "mobilenet_v2", in_channels=3, encoder_weights="imagenet"))
    a, b = _params(src.encoder), _params(dst.encoder)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_classic_unet_weights_from_file(tmp_path):
    torch.manual_seed(9)
    src = create_model("unet", base_channels=8, depth=2)
    path = tmp_path / "unet.pth"
    torch.save({"model": src.state_dict()}, path)
    dst = create_model("unet", base_channels=8, depth=2, encoder_weights=str(path))
    a, b = _params(src), _params(dst)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="no pretrained encoder"):
        create_model("unet", encoder_weights="imagenet")
