"""Small exact rewrites of exported ONNX graphs.

EfficientNet-Lite's TensorFlow weights need TF's asymmetric "SAME" padding before every stride-2
convolution (sonoseg.models.pretrained_lite), which the exporter writes as a separate ``Pad`` node.
In a QDQ int8 graph that ``Pad`` runs in float between a DequantizeLinear and a QuantizeLinear, on
the largest activations of the network: on a 2-core AMD EPYC it made the Lite0 FPN ~1.5x slower
than its FLOP count says. A zero-valued constant pad on the spatial axes is exactly a convolution
with larger (asymmetric) ``pads``, which ONNX Conv supports, so the ``Pad`` is folded away.

smp's FPN merges its four pyramid levels with ``torch.stack(x).sum(0)``, exported as four
``Unsqueeze`` + ``Concat`` + ``ReduceSum``; in a QDQ graph that is a 4x-sized float copy and a
reduction, where three ``Add`` nodes (``QLinearAdd`` after quantisation) compute the same sum.
"""

from __future__ import annotations

import numpy as np


def _attr(node, name, default=None):
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def fold_pads_into_convs(model) -> int:
    """Fold ``Pad(constant 0, spatial axes only, constant pads) -> Conv`` pairs into the Conv's
    ``pads`` in place; returns how many were folded. Pads that feed anything else, pad the batch or
    channel axes, have a computed size or a non-zero value are left alone."""
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in graph.output}
    folded = []
    for pad in graph.node:
        if pad.op_type != "Pad" or _attr(pad, "mode", b"constant") not in (b"constant", "constant"):
            continue
        if len(pad.input) < 2 or pad.input[1] not in inits or pad.output[0] in outputs:
            continue
        if len(pad.input) > 2 and pad.input[2]:
            value = inits.get(pad.input[2])
            if value is None or np.any(numpy_helper.to_array(value) != 0):
                continue
        if len(pad.input) > 3 and pad.input[3]:  # explicit axes: keep it simple, leave those
            continue
        users = consumers.get(pad.output[0], [])
        if len(users) != 1 or users[0].op_type != "Conv":
            continue
        conv = users[0]
        if _attr(conv, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            continue
        p = numpy_helper.to_array(inits[pad.input[1]]).astype(np.int64).ravel()
        rank = p.size // 2
        begin, end = p[:rank], p[rank:]
        if rank < 3 or begin[:2].any() or end[:2].any() or (p < 0).any():
            continue
        spatial = rank - 2
        old = list(_attr(conv, "pads", [0] * (2 * spatial)))
        new = [int(old[k] + begin[2 + k]) for k in range(spatial)] + \
              [int(old[spatial + k] + end[2 + k]) for k in range(spatial)]
        for a in list(conv.attribute):
            if a.name == "pads":
                conv.attribute.remove(a)
        conv.attribute.append(onnx.helper.make_attribute("pads", new))
        conv.input[0] = pad.input[0]
        folded.append(pad)
    for pad in folded:
        graph.node.remove(pad)
    if folded:  # their pads tensors are now unused
        _drop_unused_initializers(graph)
    return len(folded)


def _drop_unused_initializers(graph) -> None:
    """Constants no node reads any more (onnxruntime warns about each otherwise)."""
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)


def _is_const(inits, name, values: list[int]) -> bool:
    """Whether ``name`` is an initializer holding exactly the integers ``values``."""
    from onnx import numpy_helper

    return name in inits and numpy_helper.to_array(inits[name]).astype(np.int64).ravel().tolist() == values


def stacked_sums_to_adds(model) -> int:
    """Rewrite ``ReduceSum(Concat(Unsqueeze(a, 0), Unsqueeze(b, 0), ...), axes=0, keepdims=0)`` (a
    ``torch.stack(xs).sum(0)``) as ``a + b + ...`` in place; returns how many were rewritten. Anything
    whose intermediates are used elsewhere is left alone."""
    import onnx

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    uses: dict[str, int] = {}
    for n in graph.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    outputs = {o.name for o in graph.output}
    done = 0
    for red in list(graph.node):
        if red.op_type != "ReduceSum" or _attr(red, "keepdims", 1) != 0 or len(red.input) < 2:
            continue
        cat = producer.get(red.input[0])
        if not _is_const(inits, red.input[1], [0]) or cat is None or cat.op_type != "Concat" or _attr(cat, "axis") != 0:
            continue
        if uses.get(cat.output[0], 0) != 1 or cat.output[0] in outputs or len(cat.input) < 2:
            continue
        unsq = [producer.get(i) for i in cat.input]
        if any(u is None or u.op_type != "Unsqueeze" or len(u.input) < 2 or uses.get(u.output[0], 0) != 1
               or not _is_const(inits, u.input[1], [0]) for u in unsq):
            continue
        terms = [u.input[0] for u in unsq]
        at = list(graph.node).index(red)
        acc = terms[0]
        new = []
        for k, t in enumerate(terms[1:], 1):
            out = red.output[0] if k == len(terms) - 1 else f"{red.name}_add{k}_output"
            new.append(onnx.helper.make_node("Add", [acc, t], [out], name=f"{red.name}_add{k}"))
            acc = out
        for n in [red, cat, *unsq]:
            graph.node.remove(n)
        at -= 1 + len(unsq)  # the Concat and Unsqueezes came before the ReduceSum (topological order)
        for k, n in enumerate(new):
            graph.node.insert(at + k, n)
        done += 1
    if done:
        _drop_unused_initializers(graph)
    return done


def simplify_file(path, optimize: bool = True) -> dict[str, int]:
    """Apply the exact rewrites of this module to the ONNX file at ``path`` in place; returns how many
    of each were made (``{"pads folded": n, "stacked sums": m}``).

    Exported graphs compute a pad's sizes through a small chain of shape ops, so with ``optimize``
    the file first goes through onnxruntime's *basic* level (constant folding and redundant-node
    removal only: standard ONNX ops, safe to save) to turn those sizes into constants. The file is
    rewritten only when something changed; callers verify the result against PyTorch."""
    import os
    import tempfile
    from pathlib import Path

    import onnx

    path = Path(path)
    model = onnx.load(str(path))
    if not any(n.op_type in ("Pad", "ReduceSum") for n in model.graph.node):
        return {"pads folded": 0, "stacked sums": 0}
    if optimize:
        import onnxruntime as ort

        fd, opt = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
        os.close(fd)
        try:
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
            so.optimized_model_filepath = opt
            so.log_severity_level = 3
            ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            model = onnx.load(opt)
        finally:
            os.unlink(opt)
    done = {"pads folded": fold_pads_into_convs(model), "stacked sums": stacked_sums_to_adds(model)}
    if any(done.values()):
        onnx.save(model, str(path))
    return done


def describe(done: dict[str, int]) -> list[str]:
    """One note per kind of rewrite :func:`simplify_file` made (for export and quantisation reports)."""
    what = {"pads folded": "zero Pad node(s) folded into their convolutions",
            "stacked sums": "stack+ReduceSum merge(s) written as Add nodes"}
    return [f"{n} {what[k]}" for k, n in done.items() if n]
