"""TFLite (LiteRT): a float .tflite from litert-torch, and a full-integer int8 .tflite.

Route: PyTorch -> litert-torch (NHWC input, no TensorFlow) -> float .tflite, checked against
PyTorch -> ai-edge-quantizer's static int8 recipe (per-channel int8 weights, int8 activations,
int8 input and output), calibrated on the project's calibration set with true min/max ranges.

Chosen by measurement (tools/compare_tflite_quantizers.py: real Lite0 weights, 16 calibration
photos, top-1 agreement with float on 200 crops of real photos, LiteRT interpreter):
  litert-torch PT2E (HistogramObserver)              58.0 %  (its activations alone: 56.5 %)
  ai-edge-quantizer a8w8, its default moving average  76.0 %  (ranges clipped by late images)
  ai-edge-quantizer a8w8, true min/max (this route)   87.5 %
  for reference: ONNX Runtime static int8 85.5 %, NNCF/OpenVINO 82 %, int8 weights alone 88.5 %
so on these photos the int8 loss is the weights' own (the depthwise convolutions most). The
report lists every op with its dtype, the gate fails on any float compute op, and the per-layer
error table shows where a model that misses the gate loses its accuracy.
"""
from __future__ import annotations

import re
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from calibration.adapters import litert_samples
from edge.errors import UserError
from targets.base import OPENCV, BOARD_VENV, Target, bias_recipe, require, requantize
from targets.nncf_common import bias_corrected, calibration_example
from targets.onnx_graph import export_folded


_COMPUTE_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL"}
# Ops that only move or reinterpret data; a float one of these is no float compute.
_DATA_OPS = {"QUANTIZE", "DEQUANTIZE", "RESHAPE", "TRANSPOSE", "PAD", "SQUEEZE", "CONCATENATION"}


def _nhwc_model(model):
    """The model behind an NHWC input, with swish spelled x * sigmoid(x) so it quantizes."""
    import copy

    import torch
    from torch import nn

    class Swish(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(x)

    class NHWC(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x.permute(0, 3, 1, 2))

    model = copy.deepcopy(model).eval()
    for parent in list(model.modules()):
        for child_name, child in parent.named_children():
            if isinstance(child, nn.SiLU):
                setattr(parent, child_name, Swish())
    return NHWC(model).eval()


def _bias_corrected(model, calibration: np.ndarray, quant, exclude: tuple[str, ...], tmp: Path):
    """ai-edge-quantizer has no bias correction: NNCF computes it on the model's float ONNX, for full
    8-bit weights (XNNPACK's kernels need no headroom on any ISA)."""
    if quant.bias_correction == "off":
        return None
    example = calibration_example(calibration)
    float_onnx = export_folded(model, example, tmp / "float")
    return bias_corrected(model, float_onnx, calibration, quant, exclude)


def _quantize_file(model, float_artifact: Path, calibration: np.ndarray, exclude: tuple[str, ...], out: Path) -> Path:
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import calibrator, quantizer, recipe_manager
    from ai_edge_quantizer.qtyping import TFLOperationName
    from ai_edge_quantizer.utils import qsv_utils

    interpreter = Interpreter(model_path=str(float_artifact))
    signature = interpreter.get_signature_list()
    key = next(iter(signature))
    input_name = signature[key]["inputs"][0]
    recipe = recipe_manager.RecipeManager()
    recipe.add_static_config(regex=".*", operation_name=TFLOperationName.ALL_SUPPORTED, activation_num_bits=8, weight_num_bits=8)
    for op_name, tensor in _int16_scopes(interpreter, model, exclude):
        # the quantizer matches scopes by the first of a fused op's ';'-joined names
        recipe.add_static_config(regex=f"^{re.escape(tensor.split(';')[0])}(;|$)", operation_name=TFLOperationName(op_name),
                                 activation_num_bits=16, weight_num_bits=8)
    q = quantizer.Quantizer(str(float_artifact))
    q.load_quantization_recipe(recipe.get_quantization_recipe())
    samples = litert_samples(calibration, input_name)
    # Quantizer.calibrate keeps a moving average of per-image min/max, which clips what a few images
    # reach; the calibrator itself takes the true min/max over the whole set (what ONNX Runtime's MinMax does).
    calib = calibrator.Calibrator(str(float_artifact), num_threads=2, qsv_update_func=qsv_utils.min_max_update)
    calib.calibrate({key: samples}, q._recipe_manager)
    result = q.quantize(calib.get_model_qsvs())
    path = Path(out).with_suffix(".tflite")
    result.export_model(str(path), overwrite=True)
    return path


def torch_name(tensor_name: str) -> str | None:
    """The Conv2d behind a litert-torch tensor name, e.g. '.../Sequential_features/Conv2dNormActivation_8/
    torch.nn.modules.conv.Conv2d_0;2' -> 'features.8.0' (segments are 'module.Class_attribute')."""
    for part in tensor_name.split(";"):
        segments = [seg.rsplit(".", 1)[-1] for seg in part.split("/")]
        if len(segments) > 2 and "Conv2d" in segments[-1].split("_", 1)[0]:  # Conv2d, timm's Conv2dSame, StaticSameConv2d
            return ".".join(seg.split("_", 1)[1] for seg in segments[2:])  # past the NHWC wrapper and its `inner`
    return None


def _int16_scopes(interpreter, model, layers: tuple[str, ...]) -> list[tuple[str, str]]:
    """(op name, output tensor name) of each excluded layer's op and of the op producing its input."""
    if not layers:
        return []
    from torch import nn

    tensors = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    ops = [o for o in interpreter._get_ops_details() if len(o["outputs"])]
    producer = {o["outputs"][0]: o for o in ops}
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)] if model is not None else []
    by_layer = {}
    for o in ops:
        if o["op_name"] in _COMPUTE_OPS:
            layer = torch_name(tensors[o["outputs"][0]])
            if layer is None and o["op_name"] == "FULLY_CONNECTED" and len(linears) == 1:
                layer = linears[0]  # the classifier's output is the graph output, named by the signature
            by_layer[layer] = o
    unknown = sorted(set(layers) - set(by_layer))
    if unknown:
        raise UserError(f"no TFLite op for layer(s) {', '.join(unknown)}")
    scopes = []
    for layer in layers:
        op = by_layer[layer]
        scopes.append((op["op_name"], tensors[op["outputs"][0]]))
        source = producer.get(op["inputs"][0])
        if source is not None and source["op_name"] not in _DATA_OPS:
            scopes.append((source["op_name"], tensors[source["outputs"][0]]))
    return scopes


class TFLiteTarget(Target):
    """LiteRT on CPU boards: float .tflite from litert-torch, full-integer int8 from ai-edge-quantizer."""

    name = "tflite"
    requires = {"litert-torch": "litert_torch", "ai-edge-quantizer": "ai_edge_quantizer", "ai-edge-litert": "ai_edge_litert"}
    device_runtime = "litert"
    device_requires = (OPENCV, "ai-edge-litert==2.3.0  # tflite-runtime also works, far slower on int8 (fallback)")
    device_install = (BOARD_VENV + " (Raspberry Pi OS 64-bit: ai-edge-litert has aarch64 wheels; tflite-runtime also "
                      "works but ran int8 about 40x slower and needs numpy<2). The Pi camera: `--source picamera2` (with "
                      "`sudo apt install python3-picamera2`) or a libcamera GStreamer pipeline.")
    artifact_suffix = ".tflite"
    higher_precision = "int16 activations (16x8)"  # what QUANT=auto keeps a layer in: the file stays full-integer
    full_integer = True  # XNNPACK's and the Edge TPU's int8 paths: a float op leaves them

    def recipe(self, quant, isa: str) -> dict:
        return {"int8 arithmetic": "XNNPACK's int8 kernels widen products to 16/32 bits on x86 and Arm alike", **bias_recipe(quant)}

    def convert_float(self, model, example, out: Path) -> Path:
        import os

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the converter's C++ info lines are noise here
        litert_torch = require("litert_torch", "litert-torch", self.name)
        path = Path(out).with_suffix(".tflite")
        nhwc = example.permute(0, 2, 3, 1).contiguous()
        litert_torch.convert(_nhwc_model(model), (nhwc,)).export(str(path))
        return path

    def quantize(self, model, float_artifact: Path, calibration: np.ndarray, quant, out: Path, exclude: tuple[str, ...] = (), *,
                 isa: str, settings=None) -> Path:
        """Float .tflite + calibration batch -> full-integer int8 .tflite (ai-edge-quantizer, static a8w8).

        `exclude`: PyTorch module names kept out of int8 the way a full-integer file can: the op and
        the op producing its input run with int16 activations (16x8: int8 weights, int16 activations).
        The float model it quantizes carries NNCF's bias correction (targets/onnx.py bias_corrected).
        """
        require("ai_edge_quantizer", "ai-edge-quantizer", self.name)
        with tempfile.TemporaryDirectory() as tmp:
            corrected = _bias_corrected(model, calibration, quant, exclude, Path(tmp))
            if corrected is not None:
                float_artifact = self.convert_float(corrected, calibration_example(calibration), Path(tmp) / "corrected")
            return _quantize_file(model, float_artifact, calibration, exclude, out)

    def export_qat(self, qat_model, float_model, example, calibration: np.ndarray, quant, out: Path, *, isa: str) -> Path:
        """LiteRT's converter cannot read NNCF's quantizers: the QAT-trained weights take this target's own
        route (float .tflite, full-integer int8 with ranges calibrated again)."""
        return requantize(self, qat_model, float_model, example, calibration, quant, out, isa)

    def with_pixel_input(self, artifact: Path, preprocess, out: Path) -> Path:
        """The same file: a .tflite input's quantization is per tensor with an integer zero point and cannot hold
        the normalisation, so the board's runner maps pixels to it by table (LiteRTRunner.accept_pixels)."""
        import shutil

        return Path(shutil.copyfile(artifact, Path(out).with_suffix(".tflite")))

    def describe(self, artifact: Path) -> dict:
        """Every op with its output dtype, the input/output quantization, and any float compute left."""
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        it = Interpreter(model_path=str(artifact), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        it.allocate_tensors()
        tensors = {t["index"]: t for t in it.get_tensor_details()}
        ops = [(o["op_name"], tensors[o["outputs"][0]]["dtype"].__name__, [tensors[i]["dtype"].__name__ for i in o["inputs"] if i >= 0])
               for o in it._get_ops_details() if len(o["outputs"])]
        compute = [op for op in ops if op[0] in _COMPUTE_OPS]
        int8_compute = [op for op in compute if op[2] and op[2][0] in ("int8", "int16")]
        float_ops = sorted({f"{n}:{dt}" for n, dt, _ in ops if dt.startswith("float") and n not in _DATA_OPS})
        inp, outp = it.get_input_details()[0], it.get_output_details()[0]
        quantized = bool(int8_compute)
        return {
            "compute_ops": len(compute),
            "compute_ops_int8_input": len(int8_compute),
            "int8_macs_share": len(int8_compute) / len(compute) if compute else 0.0,
            "op_types": dict(Counter(f"{n}:{dt}" for n, dt, _ in ops)),
            "float_compute_ops": float_ops if quantized else [],
            "full_integer": quantized and not float_ops,  # the gate fails an int8 file that is not
            "input": {"dtype": inp["dtype"].__name__, "shape": [int(d) for d in inp["shape"]],
                      "scale": float(inp["quantization"][0]), "zero_point": int(inp["quantization"][1])},
            "output": {"dtype": outp["dtype"].__name__, "scale": float(outp["quantization"][0]), "zero_point": int(outp["quantization"][1])},
        }

    def layer_errors(self, float_artifact: Path, int8_artifact: Path, batch: np.ndarray, worst: int = 10) -> list[dict]:
        """Each op's output in the int8 model against the float model's same tensor, on a few images.

        Error is mean |int8 - float| / mean |float| (dequantized), averaged over the images; the
        `worst` ops are returned, in graph order, so the report shows where accuracy is lost.
        """
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        from edge.runners import dequantize, quantize_input

        def tensors(path: Path, x: np.ndarray) -> tuple[dict, list]:
            it = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True,
                             experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            it.allocate_tensors()
            inp = it.get_input_details()[0]
            it.set_tensor(inp["index"], quantize_input(x, inp))
            it.invoke()
            details = it.get_tensor_details()
            values = {}
            for t in details:
                try:
                    values[t["name"]] = dequantize(it.get_tensor(t["index"]), t)
                except ValueError:
                    continue
            order = [(o["op_name"], details[o["outputs"][0]]["name"]) for o in it._get_ops_details() if len(o["outputs"])]
            return values, order

        totals: dict[str, list[float]] = {}
        order = []
        for i in range(len(batch)):
            x = batch[i : i + 1].transpose(0, 2, 3, 1)
            ref, order = tensors(float_artifact, x)
            got, _ = tensors(int8_artifact, x)
            for op, tensor in order:
                if tensor in ref and tensor in got and ref[tensor].shape == got[tensor].shape:
                    a, b = ref[tensor], got[tensor]
                    totals.setdefault(tensor, []).append(float(np.abs(a - b).mean() / (np.abs(a).mean() + 1e-12)))
        rows = [{"index": n, "op": op, "tensor": torch_path(tensor), "relative_error": float(np.mean(totals[tensor]))}
                for n, (op, tensor) in enumerate(order) if tensor in totals]
        keep = {r["index"] for r in sorted(rows, key=lambda r: -r["relative_error"])[:worst]}
        return [r for r in rows if r["index"] in keep]


TARGET = TFLiteTarget()


def torch_path(tensor: str) -> str:
    """A LiteRT tensor name as the PyTorch module path it came from: litert-torch names a tensor by its module chain,
    `pkg.Class_attr` per level (`.../Sequential_blocks/Sequential_5/InvertedResidual_2/Conv2d_conv_dw;1`, fused
    ops `;`-joined), so the report shows `blocks.5.2.conv_dw` where the raw name cut to a width lost its start."""
    levels = tensor.split(";")[0].split("/")[1:]  # the first level is the NHWC wrapper
    attrs = [cls.split("_", 1)[1] for cls in (level.rsplit(".", 1)[-1] for level in levels) if "_" in cls]
    return ".".join(a for a in attrs if a != "inner") or tensor.split(";")[0]
