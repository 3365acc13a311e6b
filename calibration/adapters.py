"""The calibration batch in the form each quantizer takes: one image per item, at the static batch of 1 the artifacts
have. NNCF's Dataset (OpenVINO, the ONNX targets, QAT's initialisation), ONNX Runtime's CalibrationDataReader and
ai-edge-quantizer's NHWC samples. The quantizer packages are the caller's: nothing here imports them."""
from __future__ import annotations

import numpy as np


def nncf_dataset(nncf, calibration: np.ndarray, transform=None):
    """NNCF's dataset over the batch; `transform` turns an item into what the model takes (a dict, a tensor)."""
    return nncf.Dataset([calibration[i : i + 1] for i in range(len(calibration))], transform)


class OnnxRuntimeReader:
    """ONNX Runtime's CalibrationDataReader over the batch, feeding the input `input_name`."""

    def __init__(self, calibration: np.ndarray, input_name: str):
        self._items = iter([{input_name: calibration[i : i + 1]} for i in range(len(calibration))])

    def get_next(self):
        return next(self._items, None)


def litert_samples(calibration: np.ndarray, input_name: str) -> list[dict]:
    """ai-edge-quantizer's calibration samples: the batch in the NHWC layout a .tflite input has."""
    return [{input_name: np.ascontiguousarray(calibration[i : i + 1].transpose(0, 2, 3, 1))} for i in range(len(calibration))]
