"""ONNX Runtime: the generic CPU/ARM target. Float ONNX with BatchNorm folded; int8 Q/DQ ONNX.

Quantizer: ONNX Runtime's own static quantization (QDQ format, per-channel int8 weights,
uint8 activations). Measured with `tools/compare_onnx_quantizers.py` (real Lite0 weights,
16 calibration photos, top-1 agreement with float on 200 crops of real photos, this 2-core
CPU): ONNX Runtime static 85.5 % agreement at 1.13 ms p50; NNCF's ONNX backend 81.0 % at
8.47 ms (its Q/DQ placement is not one ONNX Runtime's kernels fuse); float 2.54 ms. MinMax,
Percentile and Entropy calibration all landed within a point of each other (85.5-86.0 %).
ONNX Runtime's quantizer has no bias correction, so it quantizes a float model carrying NNCF's
corrected biases (bias_corrected): on Lite0 and 288 crops of real photos, 0.885 agreement against
0.743 without (tools/measure_fidelity.py), at ONNX Runtime's own fast placement.

Boards whose int8 kernels saturate (x86 without VNNI): NNCF quantizes, with its overflow fix (7-bit
weights on every layer but the depthwise ones, whose products MLAS sums in 32 bits) and its own bias
correction for that grid, and per-tensor activations; `fused_for_onnx_runtime` then rewrites its Q/DQ
file, keeping every grid value, into the form ONNX Runtime fuses (all of Lite0's 49 convolutions and 9
residual adds). On 1000 real ImageNet photos on a Zen 3: agreement with float 0.986 against 0.965 for
ONNX Runtime's own quantizer with reduce_range (the same 7-bit weights), at 8.2 against 9.5 ms p50.
"""
from __future__ import annotations

import tempfile
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from edge.errors import UserError
from edge.runners import PIXELS_INPUT
from targets.base import OPENCV, Target, bias_recipe, nncf_dataset, require, requantize

OPSET = 17

_COMPUTE_OPS = {"Conv", "Gemm", "MatMul"}


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


class _Reader:
    """ONNX Runtime's CalibrationDataReader over the project's calibration batch."""

    def __init__(self, calibration: np.ndarray, input_name: str):
        self._items = iter([{input_name: calibration[i : i + 1]} for i in range(len(calibration))])

    def get_next(self):
        return next(self._items, None)


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
    return {torch_name(n.name): n.name for n in onnx.load(str(artifact)).graph.node if n.op_type in _COMPUTE_OPS}


def nncf_quantize(float_artifact: Path, calibration: np.ndarray, quant, exclude: tuple[str, ...] = ()):
    """Float ONNX -> NNCF's int8 Q/DQ ONNX model (in memory), with the quantizer settings `quant` gives.

    `exclude`: PyTorch module names whose Conv/Gemm stays float (NNCF's ignored scope).
    """
    onnx = require("onnx", "onnx", "the onnx target")
    nncf = require("nncf", "nncf", "the onnx target")
    kwargs = quant.nncf_kwargs(nncf, len(calibration))
    if exclude:
        kwargs["ignored_scope"] = nncf.IgnoredScope(names=[_nodes_for(float_artifact, exclude)[layer] for layer in exclude])
    dataset = nncf_dataset(nncf, calibration, lambda item: {"input": item})
    return nncf.quantize(onnx.load(str(float_artifact)), dataset, **kwargs)


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


def bias_corrected(model, float_artifact: Path, calibration: np.ndarray, quant, exclude: tuple[str, ...] = ()):
    """A BatchNorm-folded copy of `model` carrying the biases NNCF's bias correction computes for its
    int8 version, or None under quant.bias_correction=off.

    For quantizers without bias correction (ONNX Runtime's, ai-edge-quantizer): each layer's bias
    absorbs the mean shift int8 rounding causes in its output, measured on the calibration set
    through the layers before it. NNCF computes it on `float_artifact` (this model's float ONNX)
    with the same per-channel int8 weights and the board's overflow fix.
    """
    if quant.bias_correction == "off":
        return None
    import torch
    from onnx import numpy_helper

    from targets.fold import fold_batchnorm

    # The quantizers these biases are for (ONNX Runtime's, ai-edge-quantizer) scale each activation tensor as a whole
    int8 = nncf_quantize(float_artifact, calibration, quant.per_tensor_activations(), exclude)
    tensors = {t.name: t for t in int8.graph.initializer}
    folded = fold_batchnorm(model, calibration_example(calibration))
    modules = dict(folded.named_modules())
    for node in int8.graph.node:
        if node.op_type in ("Conv", "Gemm") and len(node.input) > 2 and node.input[2] in tensors:
            bias = modules[torch_name(node.name)].bias
            bias.data = torch.from_numpy(numpy_helper.to_array(tensors[node.input[2]]).copy()).to(bias.dtype)
    return folded


def depthwise_weights(artifact: Path) -> list[str]:
    """The weight tensors of the grouped (depthwise) convolutions."""
    onnx = require("onnx", "onnx", "the onnx target")
    return [n.input[1] for n in onnx.load(str(artifact)).graph.node
            if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute)]


def _full_range_depthwise(prepared: Path, reduce_range: bool) -> dict:
    """quantize_static's extra_options keeping depthwise weights at 8 bits under reduce_range."""
    if not reduce_range:
        return {}
    return {"TensorQuantOverrides": {w: [{"axis": 0, "reduce_range": False}] for w in depthwise_weights(prepared)}}


def calibration_example(calibration: np.ndarray):
    import torch

    return torch.from_numpy(calibration[:1])


def _nodes_for(float_artifact: Path, layers: tuple[str, ...]) -> dict[str, str]:
    nodes = compute_nodes(float_artifact)
    unknown = sorted(set(layers) - set(nodes))
    if unknown:
        raise UserError(f"no Conv/Gemm node for layer(s) {', '.join(unknown)} in {float_artifact}")
    return nodes


def _float_inputs(path: Path, excluded: set[str]) -> None:
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


def export_qdq(qat_model, example, out: Path) -> Path:
    """A model quantized by NNCF in PyTorch -> ONNX with standard QuantizeLinear/DequantizeLinear pairs."""
    from nncf.torch.quantization.layers import BaseQuantizer, QuantizerExportMode

    for module in qat_model.modules():
        if isinstance(module, BaseQuantizer):
            module.set_export_mode(QuantizerExportMode.ONNX_QUANTIZE_DEQUANTIZE_PAIRS)
    return export_onnx(qat_model.eval(), example, out)


def _weight_shape(tensor: str, producer: dict, inits: dict) -> list[int]:
    from onnx import numpy_helper

    while tensor not in inits and tensor in producer:
        tensor = producer[tensor].input[0]  # through DequantizeLinear / QuantizeLinear
    return list(numpy_helper.to_array(inits[tensor]).shape) if tensor in inits else []


def _macs(node, producer: dict, inits: dict, shapes: dict) -> int:
    weight = _weight_shape(node.input[1], producer, inits)
    if not weight:
        return 0
    if node.op_type == "Conv":
        out = shapes.get(node.output[0], [])
        spatial = int(np.prod(out[2:])) if len(out) > 2 and all(out[2:]) else 1
        return int(np.prod(weight)) * spatial
    return int(np.prod(weight))


SATURATING_QUANTIZER = ("NNCF's with its overflow fix, fused for ONNX Runtime, where every activation is a "
                        "ReLU/ReLU6 (Lite); ONNX Runtime's with reduce_range otherwise (swish)")


class OnnxRuntimeTarget(Target):
    """Any CPU board with ONNX Runtime: float ONNX, ONNX Runtime's static int8 Q/DQ on NNCF-corrected biases."""

    name = "onnx"
    requires = {"onnx": "onnx", "onnxruntime": "onnxruntime"}
    device_runtime = "onnxruntime"
    device_requires = (OPENCV, "onnxruntime==1.32.0")
    artifact_suffix = ".onnx"
    pixel_type = "uint8"  # the camera's own bytes

    def recipe(self, quant) -> dict:
        if quant.saturates:  # quantize(): which quantizer follows from the model's activations
            return {"quantizer": SATURATING_QUANTIZER, "weights": "7-bit; depthwise 8-bit (summed in 32 bits)", **bias_recipe(quant)}
        return {"quantizer": "ONNX Runtime's quantize_static", **bias_recipe(quant)}

    def convert_float(self, model, example, out: Path) -> Path:
        """Float ONNX with BatchNorm folded into the convolutions."""
        from targets.fold import fold_batchnorm

        return export_onnx(fold_batchnorm(model, example), example, out)

    def quantize(self, model, float_artifact: Path, calibration: np.ndarray, quant, out: Path, exclude: tuple[str, ...] = ()) -> Path:
        """Float ONNX + calibration batch -> QDQ int8 ONNX with ONNX Runtime's static quantization.

        ONNX Runtime's quantizer has no bias correction: it quantizes a float model that carries NNCF's
        corrected biases (bias_corrected). `exclude`: PyTorch module names whose Conv/Gemm
        stays float (ONNX Runtime's nodes_to_exclude).
        """
        require("onnxruntime", "onnxruntime", self.name)
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        path = Path(out).with_suffix(".onnx")
        if quant.saturates and activations_fold_into_grids(float_artifact):  # see the module's docstring
            # ONNX Runtime's QLinearConv takes one activation scale per tensor
            int8 = nncf_quantize(float_artifact, calibration, quant.per_tensor_activations(), exclude)
            require("onnx", "onnx", self.name).save(fused_for_onnx_runtime(int8), str(path))
            return path
        nodes = _nodes_for(float_artifact, exclude)
        with tempfile.TemporaryDirectory() as tmp:
            # NNCF's 8-bit weight grid is ONNX Runtime's; its 7-bit one (overflow fix) is not reduce_range's,
            # and corrections for another grid made 7-bit agreement worse (0.604 vs 0.691, 8-bit's: 0.691).
            corrected = bias_corrected(model, float_artifact, calibration, quant.without_headroom(), exclude)
            if corrected is not None:
                float_artifact = self.convert_float(corrected, calibration_example(calibration), Path(tmp) / "corrected")
            prepared = Path(tmp) / "prepared.onnx"
            quant_pre_process(str(float_artifact), str(prepared))  # shape inference + graph clean-up
            quantize_static(
                str(prepared), str(path), _Reader(calibration, "input"),
                quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                calibrate_method=getattr(CalibrationMethod, quant.ort_calibration),
                reduce_range=quant.saturates,  # 7-bit weights where the board's int8 kernels can saturate
                extra_options=_full_range_depthwise(prepared, quant.saturates),
                nodes_to_exclude=[nodes[layer] for layer in exclude],
            )
        if exclude:
            _float_inputs(path, {nodes[layer] for layer in exclude})
        return path

    def export_qat(self, qat_model, float_model, example, calibration: np.ndarray, quant, out: Path) -> Path:
        """The QAT-trained weights through ONNX Runtime's own static quantization (ranges calibrated again).

        NNCF's own Q/DQ export ran 4-5x slower than ONNX Runtime's placement in ONNX Runtime here
        (tiny b0: 3.9 vs 0.8 ms p50), so the weights QAT trained take this target's PTQ route.
        """
        return requantize(self, qat_model, float_model, example, calibration, quant, out)

    def with_pixel_input(self, artifact: Path, preprocess, out: Path) -> Path:
        """The preprocessing as the graph's first nodes (prepend_preprocessing); the rest of the file unchanged."""
        onnx = require("onnx", "onnx", f"the {self.name} target")
        model = onnx.load(str(artifact))
        prepend_preprocessing(model, preprocess, self.pixel_type)
        onnx.checker.check_model(model)
        path = Path(out).with_suffix(".onnx")
        onnx.save(model, str(path))
        return path

    def describe(self, artifact: Path) -> dict:
        """Which compute ops run on int8 weights and int8 activations (Q/DQ inputs), by count and MACs."""
        onnx = require("onnx", "onnx", "the onnx target")
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
            if n.op_type not in _COMPUTE_OPS:
                continue
            compute += 1
            macs = _macs(n, producer, inits, shapes)
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


TARGET = OnnxRuntimeTarget()
