"""The shape of the code: dependencies run one way, the board side has no PyTorch, targets are not probed."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOST_ONLY = ("torch", "torchvision", "timm", "nncf")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in a Python file, `import x` and `from x import y` alike."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.append((node.lineno, node.module or ""))
    return found


def forbidden_imports(folder: Path, top_level: tuple[str, ...]) -> list[str]:
    return [f"{p.relative_to(folder.parent)}:{line} imports {m}" for p in sorted(folder.rglob("*.py"))
            for line, m in imported_modules(p) if m.split(".")[0] in top_level]


def test_dependencies_run_one_way():
    """pipeline -> targets -> edge: nothing in targets/ or edge/ imports pipeline/, nothing in edge/ imports targets/."""
    wrong = forbidden_imports(ROOT / "targets", ("pipeline",)) + forbidden_imports(ROOT / "edge", ("pipeline", "targets"))
    assert not wrong, wrong
    assert not (ROOT / "calibration").exists()  # the calibration set is the host's: pipeline/calibration.py


def test_board_side_has_no_host_packages():
    assert not forbidden_imports(ROOT / "edge", HOST_ONLY)
    code = ("import sys; import edge.preprocess, edge.latency, edge.tensorrt_engine, edge.runners, targets.onnx, targets.openvino; "
            f"bad = [m for m in {HOST_ONLY!r} if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_nothing_probes_a_target_or_runner():
    """Optional capabilities are declared on targets.base.Target and edge.runners.Runner, never found by hasattr."""
    probes = []
    for path in sorted((ROOT / "pipeline").rglob("*.py")) + sorted((ROOT / "targets").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("hasattr", "getattr") and node.args:
                subject = ast.unparse(node.args[0])
                if "target" in subject or "runner" in subject:
                    probes.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
    assert not probes, probes
