"""Measure full-integer int8 TFLite recipes on the real Lite0 weights (the choice in targets/tflite.py).

Each recipe quantizes the same model with the same 16 calibration photos; top-1 agreement with
the float model is measured on 200 random crops and flips of the bundled photos, in the LiteRT
interpreter (the PT2E rows on PT2E's own fake-quant model, which the conversion reproduces).

    python tools/compare_tflite_quantizers.py
"""
from __future__ import annotations

import dataclasses
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from compare_onnx_quantizers import crops  # noqa: E402

from calibration import sets as calibration  # noqa: E402
from pipeline.model.family import get_spec  # noqa: E402
from pipeline.model.load import load  # noqa: E402
from pipeline.data.sample import calibration_folder  # noqa: E402


class NHWC(torch.nn.Module):
    """The model behind an NHWC input, as TFLite wants it."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x.permute(0, 3, 1, 2))


def nhwc(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 2, 3, 1)))


def pt2e_fake_quant(model, calib, test, weights=True, activations=True) -> np.ndarray:
    from litert_torch.quantize import pt2e_quantizer as pq
    from torchao.quantization.pt2e import quantize_pt2e

    cfg = pq.get_symmetric_quantization_config(is_per_channel=True)
    if not weights:
        cfg = dataclasses.replace(cfg, weight=None)
    if not activations:
        cfg = dataclasses.replace(cfg, input_activation=None, output_activation=None)
    m = torch.export.export(NHWC(model).eval(), (nhwc(calib[:1]),), strict=True).module()
    m = quantize_pt2e.prepare_pt2e(m, pq.PT2EQuantizer().set_global(cfg))
    for i in range(len(calib)):
        m(nhwc(calib[i : i + 1]))
    m = quantize_pt2e.convert_pt2e(m, fold_quantize=False)
    with torch.no_grad():
        return np.concatenate([m(nhwc(test[i : i + 1])).numpy() for i in range(len(test))])


def tflite_logits(path: Path, test: np.ndarray) -> np.ndarray:
    from edge.runners import LiteRTRunner

    return LiteRTRunner(path, 2).infer(test)


def aeq(float_tflite: Path, calib: np.ndarray, activation_bits: int, out: Path, true_minmax: bool = True) -> Path:
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import calibrator, quantizer, recipe
    from ai_edge_quantizer.utils import qsv_utils

    signature = Interpreter(model_path=str(float_tflite)).get_signature_list()
    key = next(iter(signature))
    name = signature[key]["inputs"][0]
    q = quantizer.Quantizer(str(float_tflite))
    q.load_quantization_recipe(recipe.static_wi8_ai8() if activation_bits == 8 else recipe.static_wi8_ai16())
    data = {key: [{name: np.ascontiguousarray(calib[i : i + 1].transpose(0, 2, 3, 1))} for i in range(len(calib))]}
    if true_minmax:
        c = calibrator.Calibrator(str(float_tflite), num_threads=2, qsv_update_func=qsv_utils.min_max_update)
        c.calibrate(data, q._recipe_manager)
        cal = c.get_model_qsvs()
    else:
        cal = q.calibrate(data)  # its default: a moving average of per-image min/max
    q.quantize(cal).export_model(str(out), overwrite=True)
    return out


def main() -> None:
    import litert_torch

    spec = get_spec("lite0")
    model = load(spec).model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        calib = calibration.build(calibration_folder(tmp / "calib"), 16, spec.preprocess).batch
        test = crops(spec.preprocess, 200)
        with torch.no_grad():
            ref = model(torch.from_numpy(test)).numpy().argmax(1)
        rows = {
            "PT2E w8a8 (fake-quant)": pt2e_fake_quant(model, calib, test),
            "PT2E weights only": pt2e_fake_quant(model, calib, test, activations=False),
            "PT2E activations only": pt2e_fake_quant(model, calib, test, weights=False),
        }
        float_path = tmp / "float.tflite"
        litert_torch.convert(NHWC(model).eval(), (nhwc(calib[:1]),)).export(str(float_path))
        rows["float tflite"] = tflite_logits(float_path, test)
        rows["AEQ a8w8 moving average"] = tflite_logits(aeq(float_path, calib, 8, tmp / "a8m.tflite", False), test)
        rows["AEQ a8w8 true min/max"] = tflite_logits(aeq(float_path, calib, 8, tmp / "a8.tflite"), test)
        rows["AEQ a16w8 true min/max"] = tflite_logits(aeq(float_path, calib, 16, tmp / "a16.tflite"), test)
        for label, logits in rows.items():
            print(f"{label:28} agreement {(logits.argmax(1) == ref).mean():.3f}")


if __name__ == "__main__":
    main()
