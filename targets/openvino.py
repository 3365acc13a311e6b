"""OpenVINO: float IR via ov.convert_model, int8 IR via NNCF post-training quantization.

NNCF's OpenVINO backend is used rather than its torch backend because it is 5-30x
faster on CPUs and quantizes exactly the graph the runtime will execute. BatchNorm is folded
in PyTorch before conversion (the CPU plugin folds it anyway) so that every convolution in the
IR keeps its PyTorch module's name: the accuracy-aware report names layers by them.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from edge.isa import saturates
from calibration.adapters import nncf_dataset
from targets.base import OPENCV, Target, require

_COMPUTE_OPS = {"Convolution", "GroupConvolution", "MatMul"}


def _ov():
    return require("openvino", "openvino", "the openvino target")


def _accuracy_control_kwargs(kwargs: dict) -> dict:
    """nncf.quantize's keyword arguments as quantize_with_accuracy_control spells them."""
    kwargs = dict(kwargs)
    kwargs["advanced_quantization_parameters"] = kwargs.pop("advanced_parameters")
    return kwargs


def torch_name(op_name: str) -> str:
    """'__module.blocks.0.0.conv_dw/aten::_convolution/GroupConvolution' -> 'blocks.0.0.conv_dw'."""
    m = re.match(r"__module\.([^/]+)/", op_name)
    return m.group(1) if m else op_name


def _save(ov, ov_model, out: Path) -> Path:
    xml = Path(out).with_suffix(".xml")
    ov.save_model(ov_model, str(xml), compress_to_fp16=False)
    return xml


def _macs(op) -> int:
    """Multiply-adds of a Convolution/GroupConvolution/MatMul at the IR's static shapes."""
    weight = [d.get_length() for d in op.get_input_partial_shape(1)]
    out = [d.get_length() for d in op.get_output_partial_shape(0)]
    if op.get_type_name() == "MatMul":
        return int(np.prod(out)) * int(op.get_input_partial_shape(0)[-1].get_length())
    return int(np.prod(weight)) * int(np.prod(out[2:]))


class OpenVINOTarget(Target):
    """Intel CPUs (and any x86 with OpenVINO): float IR, NNCF int8 IR, NNCF's own accuracy-aware search."""

    name, artifact_suffix = "openvino", ".xml"
    requires = {"openvino": "openvino", "nncf": "nncf"}
    device_runtime, device_requires = "openvino", (OPENCV, "openvino==2026.4.1")
    own_accuracy_search = True  # nncf.quantize_with_accuracy_control

    def convert_float(self, model, example, out: Path) -> Path:
        """PyTorch -> fp32 IR. Saved without fp16 compression so the float reference is true float."""
        from targets.fold import fold_batchnorm

        ov = _ov()
        model = fold_batchnorm(model, example)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace's deprecation notice, from inside OpenVINO
            ov_model = ov.convert_model(model, example_input=example, input=[tuple(example.shape)])
        return _save(ov, ov_model, out)

    def quantize(self, model, float_artifact: Path, calibration: np.ndarray, quant, out: Path, exclude: tuple[str, ...] = (), *,
                 isa: str, settings=None) -> Path:
        """fp32 IR + calibration batch -> int8 IR with NNCF PTQ (per-channel int8 weights, int8 activations)."""
        ov = _ov()
        nncf = require("nncf", "nncf", self.name)
        float_model = ov.Core().read_model(str(float_artifact))
        kwargs = quant.nncf_kwargs(nncf, len(calibration), saturates(isa))
        if exclude:
            kwargs["ignored_scope"] = nncf.IgnoredScope(patterns=[f"^__module\\.{re.escape(layer)}/" for layer in exclude])
        int8_model = nncf.quantize(float_model, nncf_dataset(nncf, calibration), **kwargs)
        return _save(ov, int8_model, out)

    def quantize_accuracy_aware(self, float_artifact: Path, calibration: np.ndarray, quant, val_x: np.ndarray, val_y: np.ndarray,
                                max_drop_points: float, out: Path, *, isa: str) -> Path:
        """nncf.quantize_with_accuracy_control: PTQ, then the layers NNCF ranks most harmful back to float until
        top-1 on the validation images is within `max_drop_points` of the float IR's."""
        ov = _ov()
        nncf = require("nncf", "nncf", self.name)
        float_model = ov.Core().read_model(str(float_artifact))

        def top1(compiled, items) -> float:  # NNCF compiles both models in f32 itself
            return float(np.mean([int(np.argmax(compiled(x[None])[0])) == int(y) for x, y in items]))

        int8_model = nncf.quantize_with_accuracy_control(
            float_model, nncf_dataset(nncf, calibration), nncf.Dataset(list(zip(val_x, val_y)), lambda item: item[0][None]), top1,
            max_drop=max_drop_points / 100, drop_type=nncf.DropType.ABSOLUTE, **_accuracy_control_kwargs(quant.nncf_kwargs(nncf, len(calibration), saturates(isa))),
        )
        return _save(ov, int8_model, out)

    def export_qat(self, qat_model, float_model, example, calibration: np.ndarray, quant, out: Path, *, isa: str) -> Path:
        """NNCF's trained quantizers become FakeQuantize ops in the IR, as PTQ's do."""
        ov = _ov()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ov_model = ov.convert_model(qat_model.eval(), example_input=example, input=[tuple(example.shape)])
        return _save(ov, ov_model, out)

    def with_pixel_input(self, artifact: Path, preprocess, out: Path) -> Path:
        """OpenVINO's PrePostProcessor: a uint8 NHWC BGR input, converted to float, reordered to RGB, normalised
        with the host's own formula (x * scale + shift) and laid out NCHW inside the IR, where the CPU plugin
        fuses it with the first layer's input."""
        ov = _ov()
        from openvino import opset13 as ops

        model = ov.Core().read_model(str(artifact))
        ppp = ov.preprocess.PrePostProcessor(model)
        ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(
            ov.preprocess.ColorFormat.BGR)
        ppp.input().model().set_layout(ov.Layout("NCHW"))
        scale = ops.constant(preprocess.scale.reshape(1, 3, 1, 1))
        shift = ops.constant(preprocess.shift.reshape(1, 3, 1, 1))
        (ppp.input().preprocess().convert_element_type(ov.Type.f32).convert_color(ov.preprocess.ColorFormat.RGB)
            .convert_layout(ov.Layout("NCHW")).custom(lambda x: ops.add(ops.multiply(x, scale), shift).output(0)))
        return _save(ov, ppp.build(), out)

    def float_compute_layers(self, artifact: Path) -> list[str]:
        """PyTorch names of the compute layers that read a float input in the IR."""
        model = _ov().Core().read_model(str(artifact))
        return [torch_name(op.get_friendly_name()) for op in model.get_ops()
                if op.get_type_name() in _COMPUTE_OPS and op.input_value(0).get_node().get_type_name() != "FakeQuantize"]

    def layer_times(self, artifact: Path, sample: np.ndarray, runs: int = 50, threads: int = 0) -> dict[str, float]:
        """Mean milliseconds per compute layer (by PyTorch name), from the CPU plugin's own per-node counters."""
        ov = _ov()
        config = {"PERF_COUNT": "YES", "INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        compiled = ov.Core().compile_model(str(artifact), "CPU", config)
        request = compiled.create_infer_request()
        totals: dict[str, float] = {}
        for _ in range(runs):
            request.infer({0: sample})
            for info in request.get_profiling_info():
                if info.node_name.startswith("__module.") and info.node_type.split("_")[0] in ("Convolution", "GroupConvolution", "FullyConnected", "MatMul"):
                    layer = torch_name(info.node_name)
                    totals[layer] = totals.get(layer, 0.0) + info.real_time.total_seconds() * 1000
        return {k: v / runs for k, v in totals.items()}

    def describe(self, artifact: Path) -> dict:
        """Which compute ops read an int8 (FakeQuantize) activation, counted and weighted by multiply-adds."""
        ov = _ov()
        model = ov.Core().read_model(str(artifact))
        compute = quantized = fq = 0
        macs_total = macs_int8 = 0
        float_ops = []
        for op in model.get_ops():
            t = op.get_type_name()
            if t == "FakeQuantize":
                fq += 1
            if t not in _COMPUTE_OPS:
                continue
            compute += 1
            macs = _macs(op)
            macs_total += macs
            if op.input_value(0).get_node().get_type_name() == "FakeQuantize":
                quantized += 1
                macs_int8 += macs
            else:
                float_ops.append(op.get_friendly_name())
        return {
            "compute_ops": compute,
            "compute_ops_int8_input": quantized,
            "fake_quantize_ops": fq,
            "int8_macs_share": macs_int8 / macs_total if macs_total else 0.0,
            "float_compute_ops": float_ops[:20],
        }


TARGET = OpenVINOTarget()
