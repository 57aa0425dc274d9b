"""Static (QDQ) and dynamic int8 quantisation of exported ONNX models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from sonoseg.config import SonosegConfig

torch.set_num_threads(1)

CFG = SonosegConfig.model_validate({"preprocess": {"size": [64, 64]}})


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.ReLU(),
        nn.ConvTranspose2d(16, 8, 2, stride=2), nn.ReLU(),
        nn.Conv2d(8, 1, 1),
    ).eval()


def phantom_grids(n, seed=0, size=64):
    from sonoseg.data.phantom import make_phantom

    return [make_phantom((size, size), seed=seed + i).image.astype(np.float32) / 255.0 for i in range(n)]


def trained_cnn() -> nn.Module:
    """small_cnn fitted for a few steps to phantom lesion masks (weights with a real purpose)."""
    from sonoseg.data.phantom import make_phantom

    model = small_cnn().train()
    phs = [make_phantom((64, 64), seed=i) for i in range(8)]
    x = torch.from_numpy(np.stack([p.image for p in phs]).astype(np.float32)[:, None] / 255.0)
    y = torch.from_numpy(np.stack([p.mask for p in phs]).astype(np.float32)[:, None])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(model(x), y, pos_weight=torch.tensor(10.0))
        loss.backward()
        opt.step()
    return model.eval()


def fg_dice(a, b) -> float:
    """Dice between the foreground (logit >= 0) of two logit arrays."""
    fa, fb = a >= 0, b >= 0
    return 2 * (fa & fb).sum() / max(fa.sum() + fb.sum(), 1)


def run(path, x):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from sonoseg.export import export_onnx

    d = tmp_path_factory.mktemp("q")
    model = trained_cnn()
    export_onnx(model, d / "fp32.onnx", config=CFG)
    return model, d


def test_static_int8_close_to_fp32_and_self_describing(exported):
    import onnx

    from sonoseg.runtime.onnx_export import read_metadata, read_onnx_config
    from sonoseg.runtime.quantize import quantization_info, quantize_static_int8

    model, d = exported
    res = quantize_static_int8(d / "fp32.onnx", d / "int8.onnx", phantom_grids(16, seed=100))
    assert res.mode == "static" and res.activation_type == "quint8" and res.per_channel and res.n_calibration == 16
    ops = [n.op_type for n in onnx.load(str(res.path)).graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    # config travels into the int8 file; quantisation is recorded
    assert read_onnx_config(res.path) == CFG
    info = json.loads(read_metadata(res.path)["sonoseg_quantization"])
    assert info["mode"] == "static" and info["calibration"] == "minmax" and quantization_info(res.path) == info
    # outputs close to fp32 on unseen phantoms (and at another size: the int8 graph stays dynamic)
    for size in (64, 96):
        x = np.stack(phantom_grids(4, seed=500, size=size))[:, None]
        ref, q = run(d / "fp32.onnx", x), run(res.path, x)
        assert q.shape == ref.shape
        assert 0.01 < (ref >= 0).mean() < 0.5  # the fitted model predicts real foreground
        assert np.abs(q - ref).mean() < 0.05 * np.abs(ref).std()
        assert fg_dice(q, ref) > 0.95


def test_wrecked_calibration_is_far_from_fp32(exported):
    """Sanity of the comparison above: calibrating on blank images must ruin the model."""
    from sonoseg.runtime.quantize import quantize_static_int8

    _, d = exported
    quantize_static_int8(d / "fp32.onnx", d / "bad.onnx", [np.zeros((64, 64), np.float32)] * 2)
    x = np.stack(phantom_grids(4, seed=500))[:, None]
    ref, q = run(d / "fp32.onnx", x), run(d / "bad.onnx", x)
    assert np.abs(q - ref).mean() > 0.1 * np.abs(ref).std()


@pytest.mark.parametrize("scheme", ["u8s8-reduced", "u8u8"])
def test_schemes_exact_on_any_cpu_are_recorded(exported, scheme):
    """The two saturation-free schemes (valid on CPUs with and without VNNI) stay close to fp32."""
    from sonoseg.runtime.quantize import SCHEMES, quantization_info, quantize_static_int8

    _, d = exported
    res = quantize_static_int8(d / "fp32.onnx", d / f"{scheme}.onnx", phantom_grids(8, seed=100), scheme=scheme)
    x = np.stack(phantom_grids(4, seed=7))[:, None]
    info = quantization_info(res.path)
    assert res.scheme == info["scheme"] == scheme and info["reduce_range"] == SCHEMES[scheme]["reduce_range"]
    assert res.weight_type == SCHEMES[scheme]["weight_type"]
    assert fg_dice(run(res.path, x), run(d / "fp32.onnx", x)) > 0.9


def test_dynamic_int8_runs_and_is_labelled(exported):
    import onnx

    from sonoseg.runtime.quantize import quantization_info, quantize_dynamic_int8

    _, d = exported
    res = quantize_dynamic_int8(d / "fp32.onnx", d / "dyn.onnx")
    ops = {n.op_type for n in onnx.load(str(res.path)).graph.node}
    assert ops & {"ConvInteger", "DynamicQuantizeLinear"}
    assert quantization_info(res.path)["mode"] == "dynamic"
    assert quantization_info(d / "fp32.onnx") is None
    x = np.stack(phantom_grids(2, seed=9))[:, None]
    assert fg_dice(run(res.path, x), run(d / "fp32.onnx", x)) > 0.9


def test_calibration_reader_batches_and_rewinds():
    from sonoseg.runtime.quantize import ImageCalibrationReader

    imgs = [np.full((8, 8), i, np.float32) for i in range(5)] + [np.zeros((4, 4), np.float32)]
    r = ImageCalibrationReader(imgs, "image", in_channels=3, batch_size=2)
    shapes = []
    while (item := r.get_next()) is not None:
        shapes.append(item["image"].shape)
    assert shapes == [(2, 3, 8, 8), (2, 3, 8, 8), (1, 3, 8, 8), (1, 3, 4, 4)]  # size change splits a batch
    r.rewind()
    first = r.get_next()["image"]
    assert first[1, 0, 0, 0] == 1.0


def test_bad_options_raise(exported):
    from sonoseg.errors import ConfigError
    from sonoseg.runtime.quantize import quantize_static_int8

    _, d = exported
    with pytest.raises(ConfigError):
        quantize_static_int8(d / "fp32.onnx", d / "x.onnx", phantom_grids(1), scheme="s4s4")
    with pytest.raises(ConfigError):
        quantize_static_int8(d / "fp32.onnx", d / "x.onnx", [])
    assert not (d / "x.onnx").exists()


# -- TF "SAME" pads folded into the convolutions (exact rewrite) -------------------------------------
def _pad_conv_graph(pads, value=0.0, second_consumer=False):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(4, 2, 5, 5)).astype(np.float32), "w")
    p = numpy_helper.from_array(np.asarray(pads, np.int64), "p")
    v = numpy_helper.from_array(np.asarray(value, np.float32), "v")
    nodes = [helper.make_node("Pad", ["x", "p", "v"], ["xp"], mode="constant"),
             helper.make_node("Conv", ["xp", "w"], ["y"], strides=[2, 2], pads=[1, 0, 0, 1])]
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if second_consumer:
        nodes.append(helper.make_node("Relu", ["xp"], ["z"]))
        outs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, None))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 16, 16])],
                          outs, [w, p, v])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _run_model(model, x):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # no fusions of its own
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})


def test_fold_pads_into_convs_is_exact():
    from sonoseg.runtime.onnx_graph import fold_pads_into_convs

    x = np.random.default_rng(1).normal(size=(1, 2, 16, 16)).astype(np.float32)
    model = _pad_conv_graph([0, 0, 1, 1, 0, 0, 2, 2])  # TF SAME of a 5x5 stride-2 conv on even input
    ref = _run_model(model, x)[0]
    assert fold_pads_into_convs(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Conv"]
    conv_pads = [a.ints for a in model.graph.node[0].attribute if a.name == "pads"][0]
    assert list(conv_pads) == [1 + 1, 0 + 1, 0 + 2, 1 + 2]  # old Conv pads + the Pad's, begin then end
    np.testing.assert_array_equal(_run_model(model, x)[0], ref)


@pytest.mark.parametrize("pads, value, second", [
    ([0, 1, 1, 1, 0, 0, 2, 2], 0.0, False),  # pads the channel axis: not a Conv padding
    ([0, 0, 1, 1, 0, 0, 2, 2], 3.0, False),  # non-zero value
    ([0, 0, 1, 1, 0, 0, 2, 2], 0.0, True),   # the padded tensor is used elsewhere too
])
def test_fold_pads_leaves_what_is_not_a_conv_padding(pads, value, second):
    from sonoseg.runtime.onnx_graph import fold_pads_into_convs

    model = _pad_conv_graph(pads, value, second)
    assert fold_pads_into_convs(model) == 0
    assert "Pad" in [n.op_type for n in model.graph.node]


# -- torch.stack(xs).sum(0) (smp FPN's merge) written as Adds (exact rewrite) ----------------------------
def _stack_sum_graph(axis=0, keepdims=0, second_consumer=False):
    from onnx import TensorProto, helper, numpy_helper

    names = ["a", "b", "c", "d"]
    nodes = [helper.make_node("Unsqueeze", [n, "zero"], [f"u{n}"]) for n in names]
    nodes += [helper.make_node("Concat", [f"u{n}" for n in names], ["st"], axis=0),
              helper.make_node("ReduceSum", ["st", "ax"], ["y"], keepdims=keepdims)]
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])]
    if second_consumer:
        nodes.append(helper.make_node("Relu", ["st"], ["z"]))
        outs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, []))
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, 8, 8]) for n in names]
    inits = [numpy_helper.from_array(np.asarray([0], np.int64), "zero"),
             numpy_helper.from_array(np.asarray([axis], np.int64), "ax")]
    return helper.make_model(helper.make_graph(nodes, "g", ins, outs, inits),
                             opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _run_named(model, feeds):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)


def test_stacked_sum_becomes_adds_with_the_same_result():
    import onnx

    from sonoseg.runtime.onnx_graph import stacked_sums_to_adds

    rng = np.random.default_rng(3)
    feeds = {n: rng.normal(size=(1, 3, 8, 8)).astype(np.float32) for n in "abcd"}
    model = _stack_sum_graph()
    assert stacked_sums_to_adds(model) == 1
    onnx.checker.check_model(model, full_check=False)  # still topologically sorted
    assert [n.op_type for n in model.graph.node] == ["Add", "Add", "Add"]
    out = _run_named(model, feeds)[0]
    np.testing.assert_allclose(out, ((feeds["a"] + feeds["b"]) + feeds["c"]) + feeds["d"], rtol=0, atol=0)
    np.testing.assert_allclose(out, np.stack(list(feeds.values())).sum(0), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("axis, keepdims, second", [(1, 0, False), (0, 1, False), (0, 0, True)])
def test_stacked_sum_rewrite_leaves_other_reductions(axis, keepdims, second):
    from sonoseg.runtime.onnx_graph import stacked_sums_to_adds

    model = _stack_sum_graph(axis, keepdims, second)
    assert stacked_sums_to_adds(model) == 0
    assert "ReduceSum" in [n.op_type for n in model.graph.node]


def test_fpn_export_and_int8_have_no_stacked_sum(tmp_path):
    """smp's FPN merge (torch.stack(...).sum(0)) is exported as Adds, verified against PyTorch, and
    the int8 graph has no float ReduceSum/Concat between (de)quantisers."""
    import onnx

    from sonoseg.export import export_onnx
    from sonoseg.runtime.quantize import quantize_static_int8
    from sonoseg.models import create_model

    torch.manual_seed(0)
    net = create_model("fpn", encoder="resnet18", encoder_weights=None, in_channels=1, classes=1).eval()
    exp = export_onnx(net, tmp_path / "fp32.onnx", config=CFG)  # verified against PyTorch after the rewrite
    assert any("1 stack+ReduceSum merge(s) written as Add nodes" in n for n in exp.notes)
    assert "ReduceSum" not in [n.op_type for n in onnx.load(str(tmp_path / "fp32.onnx")).graph.node]
    quantize_static_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", phantom_grids(4))
    assert "ReduceSum" not in [n.op_type for n in onnx.load(str(tmp_path / "int8.onnx")).graph.node]


def test_static_int8_of_tf_padded_net_has_no_float_pads(tmp_path):
    """EfficientNet-Lite's stride-2 convs (sonoseg.models.pretrained_lite) carry TF pads; in the int8
    graph they must be Conv pads, not Pad nodes running in float between (de)quantisers."""
    import onnx

    from sonoseg.export import export_onnx
    from sonoseg.runtime.quantize import quantize_static_int8
    from sonoseg.models.pretrained_lite import make_tf_faithful

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2), nn.ReLU6(), nn.Conv2d(8, 8, 5, stride=2, groups=8),
                        nn.ReLU6(), nn.Conv2d(8, 1, 1), nn.Upsample(scale_factor=4)).eval()
    make_tf_faithful(net)
    exp = export_onnx(net, tmp_path / "fp32.onnx", config=CFG)  # verified against PyTorch after folding
    assert any("2 zero Pad node(s) folded" in n for n in exp.notes)
    assert "Pad" not in [n.op_type for n in onnx.load(str(tmp_path / "fp32.onnx")).graph.node]
    quantize_static_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", phantom_grids(8))
    assert "Pad" not in [n.op_type for n in onnx.load(str(tmp_path / "int8.onnx")).graph.node]
    x = np.stack(phantom_grids(2, seed=50))[:, None]
    a, b = run(tmp_path / "fp32.onnx", x), run(tmp_path / "int8.onnx", x)
    assert np.abs(a - b).max() < 0.05 * np.abs(a).max()  # int8 still computes the same function


def test_keep_float_prefixes_from_the_model_config_stay_fp32(tmp_path):
    """model.int8_keep_float (mixed precision) travels in the fp32 file: the named convs keep float
    weights in the int8 graph, the others are quantised, and the choice is recorded."""
    import onnx

    from sonoseg.export import export_onnx
    from sonoseg.runtime.quantize import quantization_info, quantize_static_int8

    model = trained_cnn()
    cfg = CFG.model_copy(deep=True)
    export_onnx(model, tmp_path / "probe.onnx", config=CFG)
    convs = [n.name for n in onnx.load(str(tmp_path / "probe.onnx")).graph.node if n.op_type == "Conv"]
    cfg.model.int8_keep_float = [convs[0]]
    export_onnx(model, tmp_path / "fp32.onnx", config=cfg)
    res = quantize_static_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", phantom_grids(8, seed=100))
    g = onnx.load(str(res.path)).graph
    dq_out = {n.output[0] for n in g.node if n.op_type == "DequantizeLinear"}
    weight_quantised = {n.name: n.input[1] in dq_out for n in g.node if n.op_type == "Conv"}
    assert weight_quantised[convs[0]] is False
    assert all(weight_quantised[c] for c in convs[1:] if c in weight_quantised)
    info = quantization_info(res.path)
    assert info["keep_float"] == [convs[0]] and info["n_float_nodes"] == 1
    x = np.stack(phantom_grids(4, seed=7))[:, None]
    assert fg_dice(run(res.path, x), run(tmp_path / "fp32.onnx", x)) > 0.9
    # a prefix that names nothing is refused rather than silently quantising everything
    with pytest.raises(Exception, match="match no"):
        quantize_static_int8(tmp_path / "fp32.onnx", tmp_path / "x.onnx", phantom_grids(2), keep_float=["/nope/"])
