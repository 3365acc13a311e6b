"""ONNX Runtime int8 on an AVX2-only CPU: which types, weight widths and ranges keep Lite0 faithful to float.

Same photos, crops and agreement measure as tools/measure_fidelity.py (label-free: int8 top-1 ==
float top-1). The float ONNX carries NNCF's corrected biases, as targets/onnx.py quantizes it.

Run: .venv/bin/python tools/measure_ort_types.py [ROW,ROW...] [--exact] [--pairs]
(about 2 minutes a row on 2 cores). --exact also runs each file with Q/DQ unfused (dequantized
values, float sums: the file's own numerics, free of any kernel's saturation). --pairs prints each
layer's largest u8 x s8 pair sum under the 8-bit recipe, as a share of int16's range.

Measured 2026-12-01 on a 2-core AMD EPYC Zen 3 (AVX2, no VNNI), 296 calibration crops, 288 measured
crops of 36 other photos; ms/img is batch-1 inference in this loop (another job ran beside some rows):

    row      recipe                                agreement (95 % Wilson)   unfused   ms/img
    RRDW8    reduce_range, depthwise 8-bit         0.729 (0.675-0.777)       0.736      9.3  <- targets/onnx.py, board.isa=avx2
    RR       reduce_range (7-bit weights, all)     0.694 (0.639-0.745)       0.688      9.7
    RRDW8C   RRDW8 + NNCF corrections for 7 bits   0.719 (0.664-0.768)       0.726      8.0
    RRDW8P   RRDW8 + Percentile ranges             0.733 (0.679-0.780)                10.2
    RRDW8MA  RRDW8 + moving-average ranges         0.632 (0.575-0.686)                 8.4
    U7S8     8-bit weights, activations on 0..127  0.493 (0.436-0.551)       0.503      9.1
    U8U8     8-bit, unsigned weights               0.774 (0.723-0.819)                59.0  (no fast u8u8 kernel path)
    S8S8     8-bit, signed activations             0.601 (0.543-0.656)                14.8
    U8S8     8-bit (the VNNI recipe)               0.576 (0.519-0.632)       0.892      9.5  saturates
    NNCF     NNCF's own ONNX int8 for avx2         0.781 (0.730-0.825)       0.788     30.1  (u8 activations: 24.6)

What it shows:
- Weight width is what costs fidelity, not saturation: 8-bit files agree on 0.892 when run exactly,
  7-bit weights on every layer on 0.688, whatever the kernels do.
- The depthwise layers suffer most from 7 bits and need no headroom: MLAS sums depthwise products
  in 32 bits (fused 0.729 = unfused 0.736). NNCF's overflow fix leaves them at 8 bits too.
- Saturation is everywhere under 8 bits (--pairs: every non-depthwise layer but six reaches 1.2-2.0x
  int16's range on 8 calibration crops), so no layer can get its 8 bits back safely.
- Activations cannot give the bit instead (U7S8 0.493): their per-tensor grid is coarser already.
- NNCF's own ONNX file agrees better (0.781) but ONNX Runtime fuses 12 of its 49 convolutions
  (its Q/DQ sits after the ReLU6 Clip), and runs 3x slower than ONNX Runtime's own placement.
The same 8-bit U8S8 artifact agreed on 0.885 on a Zen 4 (VNNI) host: the kernels, not the file, lose it.
These figures were measured with NNCF's activation scales per channel on depthwise inputs, its CPU default then;
NNCF's own file is still made so here, while the bias corrections (targets/onnx.py: bias_corrected) are computed
per tensor since 2026-12-02, as ONNX Runtime's quantizer scales activations.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]
import targets  # noqa: E402
from edge.runners import OnnxRuntimeRunner, load_runner  # noqa: E402
from measure_fidelity import agreement, arrays, photos  # noqa: E402
from pipeline.config import make_config  # noqa: E402
from pipeline.model.family import get_spec  # noqa: E402
from pipeline.model.load import fix_same_padding, load  # noqa: E402
from targets.nncf_common import bias_corrected, calibration_example, nncf_quantize  # noqa: E402
from calibration.adapters import OnnxRuntimeReader as CalibrationReader  # noqa: E402


def corrected_float(model, calib, tmp: Path, quant=None) -> Path:
    """The float ONNX with NNCF's 8-bit bias corrections, shape-inferred: what targets/onnx.py quantizes."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    target = targets.get_target("onnx")
    fp32 = target.convert_float(model, calibration_example(calib), tmp / "fp32")
    corrected = bias_corrected(model, fp32, calib, quant or make_config("onnx", {}).quant, ())
    fp32 = target.convert_float(corrected, calibration_example(calib), tmp / "corrected")
    prepared = tmp / "prepared.onnx"
    quant_pre_process(str(fp32), str(prepared))
    return prepared


def seven_bit_activations(src: Path, dst: Path) -> Path:
    """The 8-bit U8S8 QDQ model with its uint8 activations on 0..127: scale x 255/127, zero point x 127/255.

    AVX2's u8 x s8 multiply-add (vpmaddubsw) sums pairs into int16: 255*128*2 overflows, 127*128*2 does
    not. So the weights keep their 8 bits and the activations give one up. Biases (int32 at
    activation scale x weight scale) are requantized to the new scale so fused QLinearConv stays exact.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    k = 255.0 / 127.0

    def replace(name: str, array: np.ndarray) -> None:
        inits[name].CopyFrom(numpy_helper.from_array(array, name))

    done = set()
    for n in g.node:
        if n.op_type == "QuantizeLinear" and len(n.input) == 3 and n.input[1] not in done:
            zp = numpy_helper.to_array(inits[n.input[2]])
            if zp.dtype != np.uint8:
                continue
            replace(n.input[1], (numpy_helper.to_array(inits[n.input[1]]) * k).astype(np.float32))
            replace(n.input[2], np.round(zp.astype(np.float64) / k).astype(np.uint8))
            done.add(n.input[1])
    for n in g.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            value = numpy_helper.to_array(inits[n.input[0]])
            if value.dtype == np.int32:  # a bias at (activation scale x weight scale)
                replace(n.input[1], (numpy_helper.to_array(inits[n.input[1]]) * k).astype(np.float32))
                replace(n.input[0], np.round(value / k).astype(np.int32))
    onnx.save(model, str(dst))
    return dst


def unsigned_activations(src: Path, dst: Path) -> Path:
    """Each int8 activation Q/DQ pair as uint8 on the same grid (zero point + 128): ONNX Runtime's x86
    kernels are u8 x s8, and run s8 activations slowly or through a saturating path."""
    import onnx
    from onnx import numpy_helper

    model = src if hasattr(src, "graph") else onnx.load(str(src))
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    for n in g.node:
        if n.op_type == "QuantizeLinear" and len(n.input) == 3 and n.input[2] in inits:
            zp = numpy_helper.to_array(inits[n.input[2]])
            if zp.dtype == np.int8:
                inits[n.input[2]].CopyFrom(numpy_helper.from_array((zp.astype(np.int16) + 128).astype(np.uint8), n.input[2]))
    del g.value_info[:]  # the int8 types recorded there; ONNX Runtime infers them again
    onnx.save(model, str(dst))
    return dst


def pair_sums(qdq: Path, images: np.ndarray) -> dict[str, float]:
    """Each non-grouped Conv's largest |u8 x s8 pair sum| on `images`, as a share of int16's 32767.

    AVX2's vpmaddubsw adds the products of two neighbouring K elements into int16, saturating; MLAS
    multiplies the raw uint8 activations (zero point included) by the int8 weights. K runs over
    (input channel, kernel row, kernel column), the im2col order. Above 1.0 the layer saturates.
    """
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    model = onnx.load(str(qdq))
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    convs = []
    for n in g.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        dq_x, dq_w = producer.get(n.input[0]), producer.get(n.input[1]) if len(n.input) > 1 else None
        if n.op_type == "Conv" and attrs.get("group", 1) == 1 and dq_x is not None and dq_w is not None:
            zero_point = int(inits[dq_x.input[2]]) if len(dq_x.input) > 2 else 0
            convs.append((n.name, dq_x.input[0], inits[dq_w.input[0]].astype(np.int32), attrs, zero_point))
    for _, q, _, _, _ in convs:
        g.output.append(helper.make_tensor_value_info(q, onnx.TensorProto.UINT8, None))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [q for _, q, _, _, _ in convs]
    worst = dict.fromkeys((c[0] for c in convs), 0)
    for image in images:
        outs = dict(zip(names, session.run(names, {"input": image[None]})))
        for name, q, w, attrs, zero_point in convs:
            worst[name] = max(worst[name], _largest_pair_sum(outs[q][0].astype(np.int32), w, attrs, zero_point))
    return {k: v / 32767 for k, v in worst.items()}


def _largest_pair_sum(x: np.ndarray, w: np.ndarray, attrs: dict, zero_point: int) -> int:
    """max |a[2j] w[2j] + a[2j+1] w[2j+1]| over every output of a Conv on raw uint8 input x (C, H, W)."""
    kh, kw = w.shape[2:]
    stride = attrs.get("strides", [1, 1])[0]
    pads = attrs.get("pads", [0, 0, 0, 0])
    x = np.pad(x, ((0, 0), (pads[0], pads[2]), (pads[1], pads[3])), constant_values=zero_point)
    cols = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))[:, ::stride, ::stride]
    cols = cols.transpose(1, 2, 0, 3, 4).reshape(-1, w.shape[1] * kh * kw)  # pixels, K
    wk = w.reshape(w.shape[0], -1)  # N, K
    if cols.shape[1] % 2:
        cols, wk = np.pad(cols, ((0, 0), (0, 1))), np.pad(wk, ((0, 0), (0, 1)))
    a, b = cols.reshape(len(cols), -1, 2), wk.reshape(len(wk), -1, 2)
    step, worst = max(1, 4_000_000 // (a.shape[1] * len(b))), 0
    for i in range(0, len(a), step):
        worst = max(worst, int(np.abs(np.einsum("pkt,nkt->pnk", a[i : i + step], b)).max()))
    return worst


# Row -> (what it is, quantize_static keyword arguments, the file's transformation afterwards)
ROWS = {
    "RRDW8": ("reduce_range, depthwise 8-bit", {"reduce_range": True, "depthwise_8bit": True}, None),
    "RR": ("reduce_range (7-bit weights, all)", {"reduce_range": True}, None),
    "RRDW8C": ("RRDW8 + NNCF corrections for 7 bits", {"reduce_range": True, "depthwise_8bit": True, "corrections": "avx2"}, None),
    "RRDW8P": ("RRDW8 + Percentile ranges", {"reduce_range": True, "depthwise_8bit": True, "method": "Percentile"}, None),
    "RRDW8MA": ("RRDW8 + moving-average ranges", {"reduce_range": True, "depthwise_8bit": True, "moving_average": True}, None),
    "U7S8": ("8-bit weights, activations on 0..127", {}, seven_bit_activations),
    "U8U8": ("8-bit, unsigned weights", {"weight": "QUInt8"}, None),
    "S8S8": ("8-bit, signed activations", {"activation": "QInt8"}, None),
    "U8S8": ("8-bit (the VNNI recipe)", {}, None),
}


def ort_int8(model, calib, row: dict, tmp: Path, out: Path) -> Path:
    """ONNX Runtime's static QDQ int8 of Lite0 with one row's settings."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from targets.onnx import full_range_depthwise

    corrections = make_config("onnx", {"model": "lite0", "board.isa": row["corrections"]}).quant if "corrections" in row else None
    work = tmp / out.stem
    work.mkdir()
    prepared = corrected_float(model, calib, work, corrections)
    extra = full_range_depthwise(prepared, row.get("depthwise_8bit", False))
    quantize_static(str(prepared), str(out), CalibrationReader(calib, "input"), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=getattr(QuantType, row.get("activation", "QUInt8")),
                    weight_type=getattr(QuantType, row.get("weight", "QInt8")),
                    calibrate_method=getattr(CalibrationMethod, row.get("method", "MinMax")),
                    reduce_range=row.get("reduce_range", False),
                    extra_options={**extra, **({"CalibMovingAverage": True} if row.get("moving_average") else {})})
    return out


def nncf_int8(model, calib, tmp: Path) -> Path:
    """NNCF's own ONNX int8 for an AVX2 board (overflow fix), activations moved to uint8 for MLAS."""
    # per-channel: as measured in the table above (NNCF's CPU default then; per-tensor is the project's since)
    quant = make_config("onnx", {"model": "lite0", "board.isa": "avx2", "quant.activation_scales": "per-channel"}).quant
    fp32 = targets.get_target("onnx").convert_float(model, calibration_example(calib), tmp / "nncf-float")
    return unsigned_activations(nncf_quantize(fp32, calib, quant, saturates=True), tmp / "nncf.onnx")


def report(name: str, what: str, path: Path, x, reference, confident, exact: bool) -> None:
    t0 = time.perf_counter()
    result = agreement(load_runner("onnxruntime", path), x, reference, confident)
    print(f"{name:8} {what:38} {result}  [{(time.perf_counter() - t0) / len(x) * 1000:.1f} ms/img]", flush=True)
    if exact:  # Q/DQ unfused: the file's own int8 numerics, free of the kernels' saturation
        print(f"{'':47} {agreement(OnnxRuntimeRunner(path, unsaturated_int8=True), x, reference, confident)}  (unfused)", flush=True)


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    chosen = args[0].split(",") if args else [*ROWS, "NNCF"]
    spec = get_spec("lite0")
    pre = spec.preprocess
    model = fix_same_padding(load(spec).model.eval(), pre.image_size)
    ps = photos()
    calib, x = arrays(ps[0::2], 8, pre, 0)[:300], arrays(ps[1::2], 8, pre, 1)
    with torch.no_grad():
        logits = torch.cat([model(torch.from_numpy(x[i : i + 32])) for i in range(0, len(x), 32)])
    reference, confident = logits.argmax(1).numpy(), (logits.softmax(1).max(1).values >= 0.5).numpy()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "--pairs" in sys.argv:
            for layer, share in pair_sums(ort_int8(model, calib, {}, tmp, tmp / "u8s8.onnx"), calib[:8]).items():
                print(f"{share:6.2f}  {layer}")
            return
        for name in chosen:
            if name == "NNCF":
                report(name, "NNCF's own ONNX int8 for avx2", nncf_int8(model, calib, tmp), x, reference, confident, "--exact" in sys.argv)
                continue
            what, row, after = ROWS[name]
            path = ort_int8(model, calib, row, tmp, tmp / f"{name}.onnx")
            path = after(path, tmp / f"{name}-after.onnx") if after else path
            report(name, what, path, x, reference, confident, "--exact" in sys.argv)


if __name__ == "__main__":
    main()
