"""What to install when the board's Python lacks a package the bundle needs, in one line.

Names the bundle's own requirements.txt line (its version pin included), so the fix matches
what `pip install -r requirements.txt` would install. Standard library only: it must work in
a Python that has neither numpy nor OpenCV.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

# A module the board imports -> (what it is, the pip package, a Debian/JetPack package that provides it too).
# Debian's python3-paho-mqtt is 1.x, which lacks the 2.x API edge/mqtt.py uses: pip only.
PROVIDERS = {
    "cv2": ("OpenCV", "opencv-python-headless", "python3-opencv"),
    "numpy": ("numpy", "numpy", "python3-numpy"),
    "openvino": ("OpenVINO", "openvino", None),
    "onnxruntime": ("ONNX Runtime", "onnxruntime", None),
    "ai_edge_litert": ("LiteRT", "ai-edge-litert", None),
    "tflite_runtime": ("LiteRT", "ai-edge-litert", None),
    "paho": ("paho-mqtt (for --mqtt)", "paho-mqtt", None),
    "tensorrt": ("TensorRT", "tensorrt", "python3-libnvinfer"),
    "cuda": ("cuda-python (for TensorRT)", "cuda-python", None),
}


def requirement(requirements: Path | None, package: str) -> str | None:
    """The requirements.txt line for `package` (a commented-out optional one too), without its comment."""
    if requirements is None or not Path(requirements).is_file():
        return None
    for line in Path(requirements).read_text().splitlines():
        spec = line.strip().lstrip("#").split("#")[0].strip()
        if re.match(rf"{re.escape(package)}\s*(?:[=<>!~;\[]|$)", spec, re.IGNORECASE):
            return spec
    return None


def how_to_install(module: str, requirements: Path | None = None) -> str | None:
    """'pip install ...' (and the apt alternative) for a top-level module; None for one the board does not need."""
    if module not in PROVIDERS:
        return None
    _, pip, apt = PROVIDERS[module]
    line = requirement(requirements, pip)
    if line:  # the bundle lists it: the same pin, and the system package as the alternative
        return f"pip install '{line}' (as this bundle's requirements.txt says)" + (f", or sudo apt install {apt}" if apt else "")
    if apt:  # a Jetson bundle leaves OpenCV and TensorRT to JetPack, which a venv sees only with system site packages
        return (f"sudo apt install {apt} (on a Jetson, JetPack's; a .venv needs --system-site-packages to see it), "
                f"elsewhere pip install {pip}")
    return f"pip install {pip}"


def missing_package(module: str, requirements: Path | None = None) -> str | None:
    """The one line for a Python that lacks a module the board needs; None for any other module (a bug, not a setup)."""
    top = module.split(".")[0]
    fix = how_to_install(top, requirements)
    return None if fix is None else f"{sys.executable} has no {PROVIDERS[top][0]} (no module {top!r}): {fix}"
