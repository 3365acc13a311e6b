"""ONNX graph surgery shared by the ONNX targets (onnx, jetson) and the TFLite converter's helpers: export, pad
folding, the camera-pixel preprocessing prepended as nodes, the rewrite of NNCF's Q/DQ file into the form ONNX Runtime
fuses, float inputs for layers kept out of int8, and the op and multiply-add census. Public names are for the targets
and tools; the underscored ones are this module's own.
"""
from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from edge.errors import UserError
from edge.runners import PIXELS_INPUT
from targets.base import require


OPSET = 17


COMPUTE_OPS = {"Conv", "Gemm", "MatMul"}


def export_onnx(model, example, out: Path) -> Path:
    """PyTorch -> ONNX at a static batch of 1 (TorchScript exporter: NNCF's Q/DQ export needs it)."""
    import torch

    path = Path(out).with_suffix(".onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example,), str(path), dynamo=False, opset_version=OPSET,
            input_names=["input"], output_names=["logits"], do_constant_folding=True,
        )
    onnx = require("onnx", "onnx", "the onnx target")
    model = onnx.load(str(path))
    if fold_pads(model):
        onnx.save(model, str(path))
    onnx.checker.check_model(str(path))
    return path


def _constant(name: str, nodes: list, producer: dict, inits: dict, graph_inputs: set[str]) -> np.ndarray | None:
    """A tensor's value when it depends on no graph input (the exporter computes F.pad's pads through
    ~7 constant ops it does not fold), evaluated with ONNX's reference runtime; else None."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    needed, todo = set(), [name]
    while todo:
        tensor = todo.pop()
        if tensor in graph_inputs:
            return None
        node = producer.get(tensor)
        if node is not None and id(node) not in needed:
            needed.add(id(node))
            todo.extend(i for i in node.input if i)
    chain = [n for n in nodes if id(n) in needed]
    used = {i for n in chain for i in n.input} | {name}
    graph = helper.make_graph(chain, "constant", [], [helper.make_empty_tensor_value_info(name)],
                              [inits[i] for i in used if i in inits])
    return np.asarray(ReferenceEvaluator(helper.make_model(graph)).run(None, {})[0])


def fold_pads(model) -> int:
    """Each zero Pad feeding only a Conv (TF "same" padding) becomes that Conv's own `pads`; returns how many.

    ONNX Conv takes asymmetric pads, so this is exact. A Pad node costs a copy of the activation
    (13 % of Lite0's float time in ONNX Runtime), and in an int8 graph a dequantize/quantize pair
    around it, since ONNX Runtime's fusions need the Conv to read its Q/DQ input directly.
    """
    g = model.graph
    nodes = list(g.node)
    producer = {o: n for n in nodes for o in n.output}
    inits = {i.name: i for i in g.initializer}
    inputs = {i.name for i in g.input} - set(inits)
    readers = _readers(nodes)
    folded = set()
    for pad in (n for n in nodes if n.op_type == "Pad"):
        convs = readers.get(pad.output[0], [])
        spatial = _zero_spatial_pads(pad, lambda tensor: _constant(tensor, nodes, producer, inits, inputs))
        if spatial is None or len(convs) != 1 or convs[0].op_type != "Conv" or not _add_pads(convs[0], spatial):
            continue
        convs[0].input[0] = pad.input[0]
        folded.add(id(pad))
    if folded:
        del g.node[:]
        g.node.extend(_used([n for n in nodes if id(n) not in folded], {o.name for o in g.output}))
    return len(folded)


def _zero_spatial_pads(pad, constant) -> list[int] | None:
    """An NCHW Pad's [top, left, bottom, right] when it pads H and W alone, with zeros, by constants; else None."""
    mode = next((a.s.decode() for a in pad.attribute if a.name == "mode"), "constant")
    pads = constant(pad.input[1]) if len(pad.input) > 1 else None
    value = constant(pad.input[2]) if len(pad.input) > 2 and pad.input[2] else np.zeros(1)
    if mode != "constant" or pads is None or value is None or np.any(value != 0) or len(pads) != 8:
        return None
    if np.any(pads[[0, 1, 4, 5]] != 0) or np.any(pads < 0):
        return None
    return [int(pads[2]), int(pads[3]), int(pads[6]), int(pads[7])]


def _add_pads(conv, spatial: list[int]) -> bool:
    """Add `spatial` to a Conv's explicit pads; False (unchanged) where it pads automatically."""
    from onnx import helper

    attrs = {a.name: a for a in conv.attribute}
    if "auto_pad" in attrs and attrs["auto_pad"].s not in (b"", b"NOTSET"):
        return False
    own = [0, 0, 0, 0]
    if "pads" in attrs:
        own = list(attrs["pads"].ints)
        conv.attribute.remove(attrs["pads"])
    conv.attribute.append(helper.make_attribute("pads", [a + b for a, b in zip(own, spatial)]))
    return True


def _grid_range(scale: np.ndarray, zero_point: np.ndarray) -> tuple[float, float]:
    """The float range a QuantizeLinear's per-tensor grid holds: what it clips its input to."""
    info = np.iinfo(zero_point.dtype)
    return float((info.min - int(zero_point)) * scale), float((info.max - int(zero_point)) * scale)


def _readers(nodes) -> dict[str, list]:
    """Tensor name -> the nodes that read it."""
    readers: dict[str, list] = {}
    for n in nodes:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    return readers


def _used(nodes: list, outputs: set[str]) -> list:
    """`nodes` less those whose outputs nothing reads (the Pads' constant inputs, once the Pads are gone)."""
    while True:
        read = {i for n in nodes for i in n.input} | outputs
        kept = [n for n in nodes if any(o in read for o in n.output)]
        if len(kept) == len(nodes):
            return kept
        nodes = kept


def prepend_preprocessing(model, preprocess, pixel_type: str = "uint8") -> None:
    """Make an ONNX model take the camera's pixels: (1, H, W, 3) BGR in `pixel_type`, laid out NCHW, reordered
    to RGB, cast to float and normalised with the host's own formula (x * scale + shift), in that order: the
    reorder then copies whole uint8 planes (measured: reordering the last axis in float cost ~1.5 ms of a
    6 ms Lite0 int8 call in ONNX Runtime, this order ~0)."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    old = graph.input[0]
    n, c, h, w = (d.dim_value for d in old.type.tensor_type.shape.dim)
    constants = {
        "pixels_rgb_order": np.array([2, 1, 0], np.int64),
        "pixels_scale": preprocess.scale.reshape(1, 3, 1, 1),
        "pixels_shift": preprocess.shift.reshape(1, 3, 1, 1),
    }
    nodes = [helper.make_node("Transpose", [PIXELS_INPUT], ["pixels_nchw"], perm=[0, 3, 1, 2], name="pixels_nhwc_to_nchw"),
             helper.make_node("Gather", ["pixels_nchw", "pixels_rgb_order"], ["pixels_rgb"], axis=1, name="pixels_bgr_to_rgb")]
    if pixel_type != "float32":
        nodes.append(helper.make_node("Cast", ["pixels_rgb"], ["pixels_float"], to=TensorProto.FLOAT, name="pixels_to_float"))
    nodes += [helper.make_node("Mul", [nodes[-1].output[0], "pixels_scale"], ["pixels_scaled"], name="pixels_scale"),
              helper.make_node("Add", ["pixels_scaled", "pixels_shift"], [old.name], name="pixels_shift")]
    elem = TensorProto.UINT8 if pixel_type == "uint8" else TensorProto.FLOAT
    graph.input.remove(old)
    graph.input.insert(0, helper.make_tensor_value_info(PIXELS_INPUT, elem, [n, h, w, c]))
    for node in reversed(nodes):
        graph.node.insert(0, node)
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in constants.items())


def torch_name(node_name: str) -> str:
    """The PyTorch module behind an exported node: '/blocks/blocks.0/blocks.0.0/conv_dw/Conv' -> 'blocks.0.0.conv_dw'.

    The TorchScript exporter names nodes by their module scope, one segment per level, where a
    numbered child of a Sequential repeats its parent's segment ('features', 'features.2', ...).
    """
    parts, prev = [], None
    for seg in node_name.strip("/").split("/")[:-1]:
        parts.append(seg[len(prev) + 1 :] if prev and seg.startswith(prev + ".") else seg)
        prev = seg
    return ".".join(parts)


def compute_nodes(artifact: Path) -> dict[str, str]:
    """PyTorch module name -> ONNX node name, for every Conv/Gemm/MatMul."""
    onnx = require("onnx", "onnx", "the onnx target")
    return {torch_name(n.name): n.name for n in onnx.load(str(artifact)).graph.node if n.op_type in COMPUTE_OPS}


# What may read a convolution's output for NNCF's Q/DQ file to fuse fully in ONNX Runtime: a ReLU6/ReLU
# (Clip) the next grid holds, or ops that read quantized tensors. Swish (B0-B7) is quantized after its
# Sigmoid x Mul, leaving each Conv's output float: 3x slower than ONNX Runtime's own placement on B0.
_FUSING_READERS = {"Clip", "Relu", "Conv", "Add", "GlobalAveragePool"}


def activations_fold_into_grids(float_artifact: Path) -> bool:
    """Whether every convolution's output goes only to a clipping activation or to an op that reads int8."""
    onnx = require("onnx", "onnx", "the onnx target")
    nodes = onnx.load(str(float_artifact)).graph.node
    readers = _readers(nodes)
    return all(r.op_type in _FUSING_READERS for n in nodes if n.op_type == "Conv" for r in readers.get(n.output[0], []))


def fused_for_onnx_runtime(model):
    """NNCF's Q/DQ ONNX model rewritten into the form ONNX Runtime fuses into QLinearConv and QLinearAdd.

    As NNCF writes it, ONNX Runtime fused 12 of Lite0's 49 convolutions and ran the rest in float
    (3-5x slower). Three things stood in the way, and each rewrite keeps every value on its grid:
    int8 activations beside uint8 ones (a fused Conv reads and writes one type), float biases (a fused
    Conv takes int32 ones at input scale x weight scale, as ONNX Runtime's quantizer writes them), and
    a Clip (ReLU6) before a QuantizeLinear whose grid already clips to its range.
    """
    onnx = require("onnx", "onnx", "the onnx target")
    g = model.graph
    _unsigned_activations(g)
    del g.value_info[:]  # the int8 types recorded for activations no longer hold; ONNX Runtime infers them
    _int32_biases(g)
    _drop_clips_the_grid_holds(g)
    onnx.checker.check_model(model)
    return model


def _stored_value(name: str, g) -> np.ndarray | None:
    """An initializer's or a Constant node's value (NNCF writes Clip bounds as Constant nodes)."""
    from onnx import numpy_helper

    for t in g.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    for n in g.node:
        if n.op_type == "Constant" and n.output[0] == name:
            return numpy_helper.to_array(n.attribute[0].t)
    return None


def _unsigned_activations(g) -> None:
    """int8 activation grids as uint8 with the zero point moved by 128: the same float values."""
    from onnx import TensorProto, numpy_helper

    tensors = {t.name: t for t in g.initializer}
    weights = {n.input[0] for n in g.node if n.op_type == "DequantizeLinear" and n.input[0] in tensors}
    moved = set()
    for n in g.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear") or n.input[0] in weights or len(n.input) < 3:
            continue
        zero = tensors.get(n.input[2])
        if zero is None or zero.name in moved or zero.data_type != TensorProto.INT8:
            continue
        shifted = (numpy_helper.to_array(zero).astype(np.int16) + 128).astype(np.uint8)
        zero.CopyFrom(numpy_helper.from_array(shifted, zero.name))
        moved.add(zero.name)


def _int32_biases(g) -> None:
    """Each quantized Conv's float bias as int32 behind a DequantizeLinear, at input scale x weight scale."""
    from onnx import helper, numpy_helper

    tensors = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    made = []
    for conv in g.node:
        if conv.op_type != "Conv" or len(conv.input) < 3 or conv.input[2] not in tensors:
            continue
        dq_x, dq_w = producer.get(conv.input[0]), producer.get(conv.input[1])
        if not all(d is not None and d.op_type == "DequantizeLinear" for d in (dq_x, dq_w)):
            continue
        bias = numpy_helper.to_array(tensors[conv.input[2]])
        scale = (_stored_value(dq_x.input[1], g).astype(np.float32) * _stored_value(dq_w.input[1], g).astype(np.float32)).reshape(-1)
        scale = np.broadcast_to(scale, bias.shape).astype(np.float32)
        name = conv.input[2] + "_int32"
        g.initializer.extend([numpy_helper.from_array(np.round(bias / scale).astype(np.int32), name),
                              numpy_helper.from_array(scale, name + "_scale"),
                              numpy_helper.from_array(np.zeros(bias.shape, np.int32), name + "_zero_point")])
        made.append(helper.make_node("DequantizeLinear", [name, name + "_scale", name + "_zero_point"], [name + "_dq"],
                                     name=name + "_DequantizeLinear", axis=0))
        conv.input[2] = name + "_dq"
    nodes = made + list(g.node)  # they read initializers only: first is in order
    del g.node[:]
    g.node.extend(nodes)


def _drop_clips_the_grid_holds(g) -> None:
    """Clip -> QuantizeLinear becomes QuantizeLinear where the grid lies within the Clip's range (half a step of
    slack: rounding and saturation give the same integers)."""
    readers = _readers(g.node)
    dropped = set()
    for clip in g.node:
        after = readers.get(clip.output[0], [])
        if clip.op_type != "Clip" or len(after) != 1 or after[0].op_type != "QuantizeLinear" or len(clip.input) < 3:
            continue
        q = after[0]
        low, high = _stored_value(clip.input[1], g), _stored_value(clip.input[2], g)
        scale, zero = _stored_value(q.input[1], g), _stored_value(q.input[2], g)
        if low is None or high is None or scale is None or zero is None or scale.size != 1 or zero.size != 1:
            continue
        grid_low, grid_high = _grid_range(scale.reshape(()), zero.reshape(()))
        slack = float(scale.reshape(())) / 2
        if grid_low >= float(low) - slack and grid_high <= float(high) + slack:
            q.input[0] = clip.input[0]
            dropped.add(id(clip))
    used = {i for n in g.node if id(n) not in dropped for i in n.input}
    kept = [n for n in g.node if id(n) not in dropped and not (n.op_type == "Constant" and n.output[0] not in used)]
    del g.node[:]
    g.node.extend(kept)


def depthwise_weights(artifact: Path) -> list[str]:
    """The weight tensors of the grouped (depthwise) convolutions."""
    onnx = require("onnx", "onnx", "the onnx target")
    return [n.input[1] for n in onnx.load(str(artifact)).graph.node
            if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute)]


def nodes_for(float_artifact: Path, layers: tuple[str, ...]) -> dict[str, str]:
    nodes = compute_nodes(float_artifact)
    unknown = sorted(set(layers) - set(nodes))
    if unknown:
        raise UserError(f"no Conv/Gemm node for layer(s) {', '.join(unknown)} in {float_artifact}")
    return nodes


def float_inputs(path: Path, excluded: set[str]) -> None:
    """Feed each excluded node its float input: ONNX Runtime still quantizes the producer's output,
    so a Q/DQ pair read only by excluded nodes is replaced by a float Clip to the pair's range.

    The Clip keeps the activation: ONNX Runtime's quantizer drops each ReLU6/ReLU (Clip) whose range
    the following QuantizeLinear's grid already clips to, so the pair was the activation. Bypassed
    without it, a kept-float Lite0 projection conv read its unclipped input (agreement 0.03-0.10).
    """
    onnx = require("onnx", "onnx", "the onnx target")
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    readers = _readers(g.node)
    replaced = {}
    for n in g.node:
        if n.name not in excluded:
            continue
        dq = producer.get(n.input[0])
        q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if q is None or q.op_type != "QuantizeLinear" or id(q) in replaced:
            continue
        if all(r.name in excluded for r in readers[dq.output[0]]) and len(readers[q.output[0]]) == 1:
            low, high = _grid_range(_stored_value(q.input[1], g), _stored_value(q.input[2], g))
            bounds = [numpy_helper.from_array(np.array(v, np.float32), f"{q.name}_float_{k}") for k, v in (("min", low), ("max", high))]
            g.initializer.extend(bounds)
            replaced[id(q)] = helper.make_node("Clip", [q.input[0], bounds[0].name, bounds[1].name], [dq.output[0]],
                                               name=f"{q.name}_float_range")
            replaced[id(dq)] = None
    kept = [replaced.get(id(n), n) for n in g.node]
    del g.node[:]
    g.node.extend(n for n in kept if n is not None)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _weight_shape(tensor: str, producer: dict, inits: dict) -> list[int]:
    from onnx import numpy_helper

    while tensor not in inits and tensor in producer:
        tensor = producer[tensor].input[0]  # through DequantizeLinear / QuantizeLinear
    return list(numpy_helper.to_array(inits[tensor]).shape) if tensor in inits else []


def node_macs(node, producer: dict, inits: dict, shapes: dict) -> int:
    weight = _weight_shape(node.input[1], producer, inits)
    if not weight:
        return 0
    if node.op_type == "Conv":
        out = shapes.get(node.output[0], [])
        spatial = int(np.prod(out[2:])) if len(out) > 2 and all(out[2:]) else 1
        return int(np.prod(weight)) * spatial
    return int(np.prod(weight))



def export_folded(model, example, out: Path) -> Path:
    """Float ONNX with BatchNorm folded into the convolutions: the ONNX targets' float artifact."""
    from targets.fold import fold_batchnorm

    return export_onnx(fold_batchnorm(model, example), example, out)


def with_pixel_input(artifact: Path, preprocess, out: Path, pixel_type: str) -> Path:
    """A copy of `artifact` taking the camera's pixels (`pixel_type`: uint8, or float32 for TensorRT), the
    preprocessing as the graph's first nodes (prepend_preprocessing); the rest of the file unchanged."""
    onnx = require("onnx", "onnx", "the ONNX targets")
    model = onnx.load(str(artifact))
    prepend_preprocessing(model, preprocess, pixel_type)
    onnx.checker.check_model(model)
    path = Path(out).with_suffix(".onnx")
    onnx.save(model, str(path))
    return path


def int8_census(artifact: Path) -> dict:
    """Which compute ops run on int8 weights and int8 activations (Q/DQ inputs), by count and MACs."""
    onnx = require("onnx", "onnx", "the ONNX targets")
    from onnx import numpy_helper, shape_inference

    model = shape_inference.infer_shapes(onnx.load(str(artifact)))
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    inits = {i.name: i for i in g.initializer}
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in list(g.value_info) + list(g.output)}

    def dq_of_int8(tensor: str) -> bool:
        node = producer.get(tensor)
        if node is None or node.op_type != "DequantizeLinear":
            return False
        src = node.input[0]
        if src in inits:
            return numpy_helper.to_array(inits[src]).dtype in (np.int8, np.uint8)
        q = producer.get(src)
        return q is not None and q.op_type == "QuantizeLinear"

    compute = quantized = 0
    macs_total = macs_int8 = 0
    float_ops = []
    for n in g.node:
        if n.op_type not in COMPUTE_OPS:
            continue
        compute += 1
        macs = node_macs(n, producer, inits, shapes)
        macs_total += macs
        if dq_of_int8(n.input[0]) and dq_of_int8(n.input[1]):
            quantized += 1
            macs_int8 += macs
        else:
            float_ops.append(n.name)
    ops = Counter(n.op_type for n in g.node)
    return {
        "compute_ops": compute,
        "compute_ops_int8_input": quantized,
        "quantize_ops": ops.get("QuantizeLinear", 0),
        "dequantize_ops": ops.get("DequantizeLinear", 0),
        "batchnorm_ops": ops.get("BatchNormalization", 0),
        "custom_domain_ops": sorted({f"{n.domain}::{n.op_type}" for n in g.node if n.domain not in ("", "ai.onnx")}),
        "int8_macs_share": macs_int8 / macs_total if macs_total else 0.0,
        "float_compute_ops": float_ops[:20],
    }
