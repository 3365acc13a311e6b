"""Raspberry Pi 4/5 (64-bit OS): the TFLite target's artifacts with a Pi profile (XNNPACK, 4 threads).

The runtime on the Pi is ai-edge-litert (aarch64 wheels); tflite-runtime 2.14 also works as a
fallback, but ran int8 about 40x slower here and needs numpy < 2.
"""
from __future__ import annotations

from targets.tflite import (  # noqa: F401  (the same converter, quantizer, runner and census)
    artifact_suffix,
    convert_float,
    describe,
    export_qat,
    higher_precision,
    device_requires,
    device_runtime,
    layer_errors,
    qat_preset,
    quantize,
    requires,
    runner,
)

name = "rpi"
