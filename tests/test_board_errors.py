"""Every target's bundle on a board Python that lacks OpenCV or the runtime: one line naming what the
requirements.txt the host writes for that target says (JetPack's packages where it leaves them to JetPack),
through the real imports of edge/ in a real Python without those packages."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import targets
from board import board_venv
from pipeline.ship.bundle import _requirements
from test_bundle_camera import python_with_only

ROOT = Path(__file__).resolve().parents[1]
# The pip package each runtime's requirements.txt line installs (TensorRT: none, JetPack's).
RUNTIME_PACKAGE = {"openvino": "openvino", "onnxruntime": "onnxruntime", "litert": "ai-edge-litert", "tensorrt": None}
# What the board's entry point does on such an error: edge.cli.one_line, for a bundle at argv[1].
ONE_LINE = ("import sys\nfrom pathlib import Path\nfrom edge.cli import one_line\ntry:\n    {}\n"
            "except Exception as e:\n    print(one_line(e, Path(sys.argv[1])))\n")


@pytest.fixture(scope="module")
def pythons(tmp_path_factory) -> dict:
    board, where = board_venv(), tmp_path_factory.mktemp("pythons")
    return {"numpy": python_with_only(board, ["numpy"], where / "numpy"),
            "numpy+opencv": python_with_only(board, ["numpy", "opencv_python_headless"], where / "numpy-opencv")}


def _line(python: Path, statement: str, bundle: Path) -> str:
    r = subprocess.run([str(python), "-c", ONE_LINE.format(statement), str(bundle)], capture_output=True, text=True,
                       cwd=ROOT, timeout=60)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 1, r.stdout + r.stderr
    return r.stdout.strip()


def _pinned(requirements: str, package: str) -> str | None:
    return next((line.split("#")[0].strip() for line in requirements.splitlines() if line.startswith(package)), None)


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_each_targets_bundle_names_its_requirement(name, pythons, tmp_path):
    target = targets.get_target(name)
    requirements = _requirements(target)
    (tmp_path / "requirements.txt").write_text(requirements)
    (tmp_path / "model.onnx").write_bytes(b"")  # never parsed: the runtime's import fails first

    load = f"from edge.runners import load_runner; load_runner({target.device_runtime!r}, Path(sys.argv[1]) / 'model.onnx')"
    line = _line(pythons["numpy+opencv"], load, tmp_path)
    package = RUNTIME_PACKAGE[target.device_runtime]
    pinned = package and _pinned(requirements, package)
    assert (f"pip install '{pinned}' (as this bundle's requirements.txt says)" if pinned
            else "sudo apt install python3-libnvinfer") in line, line

    line = _line(pythons["numpy"], "import edge.bundle", tmp_path)
    opencv = _pinned(requirements, "opencv-python-headless")
    assert "has no OpenCV" in line and (f"pip install '{opencv}'" if opencv else "sudo apt install python3-opencv") in line, line
