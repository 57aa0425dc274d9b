"""Quantisation-aware fine-tuning that simulates the exporter's int8 build (sonoseg.runtime.quantize).

The exporter quantises with onnxruntime's static QDQ scheme: every Conv/Gemm/MatMul node except the
model's ``model.int8_keep_float`` ones, and every ConvTranspose, gets int8 weights, symmetric per output channel (range -64..64
with ``reduce_range`` on CPUs without VNNI, else -127..127), and a uint8 input, asymmetric per tensor,
whose range is the min/max seen on calibration images (widened to include 0). Here the same
convolutions and linear layers of the PyTorch model compute with weights and inputs rounded to those
grids (``torch.fake_quantize_*``: straight-through gradients inside the range), input ranges following
a moving average of each training batch's min/max, so training learns weights whose int8 build
behaves like the fp32 model. BatchNorm folding at export scales each output channel, and symmetric
per-channel rounding commutes with that scale: rounding the unfolded weights is exact.

Not simulated: the int32 bias rounding and the quantisation of other tensors (Add, Resize, Concat
outputs), which onnxruntime also applies.

The model's parameters and ``state_dict`` are untouched (the simulation is a forward wrapper per layer
plus non-persistent range buffers), so checkpoints, ``--init``, resume and export are those of the plain
fp32 model; DDP broadcasts the range buffers from rank 0 with the other buffers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
import torch.nn as nn

from sonoseg.errors import ConfigError

# ONNX Conv / Gemm / MatMul nodes, which model.int8_keep_float can keep in fp32, and ConvTranspose, always int8
KEEPABLE_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
QUANTISED_TYPES = KEEPABLE_TYPES + (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
RANGE_BUFFER = "sonoseg_qat_range"  # [min, max] of a layer's input; not in the state_dict
WEIGHT_RANGES = {7: (-64, 64), 8: (-127, 127)}  # onnxruntime's symmetric qint8: reduce_range / full
ACT_RANGE = (0, 255)  # quint8 activations


def scheme_weight_bits(scheme: str) -> int:
    """7 for a scheme with ``reduce_range`` weights, else 8 (u8u8's uint8 weights: 8, approximately)."""
    from sonoseg.system.int8_scheme import SCHEMES

    return 7 if SCHEMES[scheme]["reduce_range"] else 8


def resolve_weight_bits(qcfg) -> int:
    """``train.qat.weight_bits``, or the bits of the int8 scheme this CPU's export will use."""
    if qcfg.weight_bits is not None:
        return int(qcfg.weight_bits)
    from sonoseg.system.int8_scheme import default_scheme

    return scheme_weight_bits(default_scheme())


def fake_quant_weight(w: torch.Tensor, bits: int, per_channel: bool = True, axis: int = 0) -> torch.Tensor:
    """``w`` rounded to onnxruntime's symmetric int8 grid (scale = max|w| / qmax per output channel:
    ``axis`` 0, or 1 for a transposed convolution's weight)."""
    qmin, qmax = WEIGHT_RANGES[bits]
    wd = w.detach().float()
    absmax = wd.abs().transpose(0, axis).flatten(1).amax(1) if per_channel else wd.abs().amax().reshape(1)
    scale = absmax / ((qmax - qmin) / 2)
    scale = torch.where(scale < torch.finfo(torch.float32).tiny, torch.ones_like(scale), scale)
    if per_channel:
        zp = torch.zeros(scale.shape, dtype=torch.int32, device=w.device)
        return torch.fake_quantize_per_channel_affine(w.float(), scale, zp, axis, qmin, qmax).to(w.dtype)
    return torch.fake_quantize_per_tensor_affine(w.float(), scale, torch.zeros(1, dtype=torch.int32, device=w.device),
                                                 qmin, qmax).to(w.dtype)


def activation_qparams(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, zero point) of onnxruntime's asymmetric uint8 for the range [lo, hi] widened to hold 0."""
    qmin, qmax = ACT_RANGE
    lo, hi = torch.clamp(lo, max=0.0), torch.clamp(hi, min=0.0)
    scale = (hi - lo) / (qmax - qmin)
    tiny = scale < torch.finfo(torch.float32).tiny
    scale = torch.where(tiny, torch.ones_like(scale), scale)
    zp = torch.where(tiny, torch.zeros_like(lo), torch.round(qmin - lo / scale))
    return scale.reshape(1).float(), zp.reshape(1).to(torch.int32)


def fake_quant_activation(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    scale, zp = activation_qparams(lo, hi)
    return torch.fake_quantize_per_tensor_affine(x.float(), scale, zp, *ACT_RANGE).to(x.dtype)


@dataclass
class QatOptions:
    weight_bits: int = 7
    per_channel: bool = True
    momentum: float = 0.01
    observer: str = "ema"  # "ema": moving average of batch min/max; "minmax": the extremes of all batches seen
    active: bool = True  # False: the layers run their plain fp32 forward (epochs before train.qat.start_epoch)
    calibrating: bool = False  # observe in eval mode too (QatHandle.calibrate)


def _observe(module: nn.Module, x: torch.Tensor, opts: QatOptions) -> None:
    """Moving-average (or running extreme) min/max of training batches (the first batch sets them)."""
    rng = getattr(module, RANGE_BUFFER)
    with torch.no_grad():
        lo, hi = torch.aminmax(x.detach())
        lo, hi = lo.float(), hi.float()
        if not module.__dict__.get("_sonoseg_qat_seen"):
            rng.copy_(torch.stack([lo, hi]))
            module.__dict__["_sonoseg_qat_seen"] = True
        elif opts.observer == "minmax":  # as the exporter's MinMax calibration over its images
            rng[0].clamp_(max=lo)
            rng[1].clamp_(min=hi)
        else:
            rng[0].lerp_(lo, opts.momentum)
            rng[1].lerp_(hi, opts.momentum)


def _qat_forward(module: nn.Module, plain, opts: QatOptions, *args, **kwargs):
    """The layer's own forward (``plain``; any subclass, e.g. timm's TF-padded convs) on a rounded input
    and weight."""
    if not opts.active:
        return plain(*args, **kwargs)
    if module.training or opts.calibrating or not module.__dict__.get("_sonoseg_qat_seen"):
        _observe(module, args[0], opts)
    rng = getattr(module, RANGE_BUFFER)
    args = (fake_quant_activation(args[0], rng[0], rng[1]), *args[1:])
    weight = module._parameters["weight"]
    axis = 1 if isinstance(module, nn.modules.conv._ConvTransposeNd) else 0
    module._parameters["weight"] = fake_quant_weight(weight, opts.weight_bits, opts.per_channel, axis)  # autograd to it
    try:
        return plain(*args, **kwargs)
    finally:
        module._parameters["weight"] = weight


@dataclass
class QatHandle:
    """The layers being simulated; :meth:`remove` restores the plain model."""

    layers: dict[str, nn.Module] = field(default_factory=dict)
    kept_float: list[str] = field(default_factory=list)  # module names left in fp32 (model.int8_keep_float)
    options: QatOptions = field(default_factory=QatOptions)

    def remove(self) -> None:
        for m in self.layers.values():
            for k in ("forward", "_sonoseg_qat_seen"):
                m.__dict__.pop(k, None)
            m._buffers.pop(RANGE_BUFFER, None)
        self.layers.clear()

    def ranges(self) -> dict[str, torch.Tensor]:
        """The observed input ranges (kept in ``last.pt`` so that a resumed run continues exactly)."""
        return {n: getattr(m, RANGE_BUFFER).detach().cpu().clone() for n, m in self.layers.items()
                if m.__dict__.get("_sonoseg_qat_seen")}

    def load_ranges(self, ranges: dict[str, torch.Tensor]) -> None:
        for n, r in ranges.items():
            m = self.layers.get(n)
            if m is not None:
                getattr(m, RANGE_BUFFER).copy_(r)
                m.__dict__["_sonoseg_qat_seen"] = True

    def calibrate(self, model: nn.Module, images, in_channels: int = 1) -> None:
        """Reset the input ranges to the extremes over ``images`` (HxW or CxHxW grids), as the exporter's
        MinMax calibration does: the simulation then stands for the int8 build of the same images."""
        for m in self.layers.values():
            m.__dict__.pop("_sonoseg_qat_seen", None)
        observer, self.options.observer, self.options.calibrating = self.options.observer, "minmax", True
        try:
            model.eval()
            with torch.no_grad():
                for img in images:
                    x = torch.as_tensor(img, dtype=torch.float32)
                    x = x.reshape(1, 1, *x.shape) if x.ndim == 2 else x[None]
                    model(x.expand(-1, in_channels, -1, -1) if x.shape[1] == 1 else x)
        finally:
            self.options.observer, self.options.calibrating = observer, False

    def record(self) -> dict:
        """What a checkpoint notes: whether these weights were trained with the int8 simulation, and how."""
        o = self.options
        return {"active": o.active, "weight_bits": o.weight_bits, "per_channel": o.per_channel,
                "layers": len(self.layers), "kept_float": list(self.kept_float)}

    def summary(self) -> str:
        return (f"{len(self.layers)} conv/linear layers with int8 weights ({self.options.weight_bits}-bit grid, "
                f"{'per channel' if self.options.per_channel else 'per tensor'}) and uint8 inputs"
                + (f"; {len(self.kept_float)} kept fp32 (model.int8_keep_float)" if self.kept_float else ""))


def onnx_scopes(model: nn.Module, example: torch.Tensor) -> dict[str, str]:
    """Module name -> the node-name prefix its ops get in the exporter's ONNX graph (torch's classic
    exporter names a node by the chain of *called* modules, each by its name with leading numeric
    parts kept, e.g. ``/model/encoder/blocks.0/blocks.0.0/conv_dw/``). Found by one forward pass."""
    names = {id(m): n for n, m in model.named_modules()}
    stack: list[str] = []
    out: dict[str, str] = {}

    def pre(m, _args):
        stack.append(_unqualified(names.get(id(m), "")))
        out.setdefault(names.get(id(m), ""), "/" + "/".join(s for s in stack if s) + "/")

    def post(_m, _args, _out):
        stack.pop()

    hooks = [m.register_forward_pre_hook(pre) for m in model.modules() if m is not model]
    hooks += [m.register_forward_hook(post) for m in model.modules() if m is not model]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return out


def _unqualified(qualified: str) -> str:
    """torch.onnx's scope name of a module: its name from the last non-numeric part on."""
    atoms = qualified.split(".")
    for i in range(len(atoms) - 1, -1, -1):
        if not atoms[i].isnumeric():
            return ".".join(atoms[i:])
    return qualified


def kept_float_modules(model: nn.Module, prefixes: Sequence[str], example: torch.Tensor) -> list[str]:
    """Names of the conv/linear modules the exporter keeps in fp32 for ``model.int8_keep_float`` (its
    node names are the module's scope + op type, e.g. ``.../conv_dw/Conv``); a prefix that matches none
    of them is an error, as in the exporter."""
    if not prefixes:
        return []
    nodes = {}
    for name, scope in onnx_scopes(model, example).items():
        m = model.get_submodule(name) if name else model
        if isinstance(m, KEEPABLE_TYPES):
            nodes[name] = [scope + op for op in (("Gemm", "MatMul") if isinstance(m, nn.Linear) else ("Conv",))]
    hit = {p: [n for n, ops in nodes.items() if any(o.startswith(p) for o in ops)] for p in prefixes}
    unmatched = [p for p, names in hit.items() if not names]
    if unmatched:
        raise ConfigError(f"model.int8_keep_float prefix(es) {', '.join(unmatched)} match no conv/linear layer "
                          "of the model")
    return sorted({n for names in hit.values() for n in names})


def attach(model: nn.Module, options: QatOptions, keep_float: Sequence[str] = (),
           example: Optional[torch.Tensor] = None) -> QatHandle:
    """Simulate int8 in every conv/linear layer of ``model`` except those the exporter keeps in fp32
    (``keep_float``: ONNX node-name prefixes, found with one forward pass of ``example``)."""
    if keep_float and example is None:
        raise ValueError("attach: keep_float needs an example input to name the layers as the exporter does")
    kept = set(kept_float_modules(model, keep_float, example)) if keep_float else set()
    handle = QatHandle(kept_float=sorted(kept), options=options)
    for name, m in model.named_modules():
        if not isinstance(m, QUANTISED_TYPES) or name in kept or RANGE_BUFFER in m._buffers:
            continue
        w = m.weight
        m.register_buffer(RANGE_BUFFER, torch.zeros(2, device=w.device), persistent=False)
        m.forward = _bound(m, m.forward, options)
        handle.layers[name] = m
    return handle


def _bound(module: nn.Module, plain, options: QatOptions):
    def forward(*args, **kwargs):
        return _qat_forward(module, plain, options, *args, **kwargs)

    return forward


def attach_from_config(model: nn.Module, cfg, device) -> QatHandle:
    """:func:`attach` with ``cfg.train.qat`` (weight bits resolved) and ``cfg.model.int8_keep_float``."""
    q = cfg.train.qat
    if cfg.is_3d:
        raise ConfigError("train.qat: quantisation-aware training is for 2D models (the int8 export is 2D only)")
    example = None
    if cfg.model.int8_keep_float:
        h, w = cfg.preprocess.size
        example = torch.zeros(1, cfg.model.in_channels, int(h), int(w), device=device)
    return attach(model, QatOptions(resolve_weight_bits(q), q.per_channel, q.observer_momentum, q.observer),
                  cfg.model.int8_keep_float, example)
