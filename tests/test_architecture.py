"""The shape of the code: dependencies run one way, the board side has no PyTorch, targets are not probed."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

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
    """pipeline -> targets -> calibration -> edge: nothing below imports what is above it."""
    wrong = (forbidden_imports(ROOT / "targets", ("pipeline",)) + forbidden_imports(ROOT / "calibration", ("pipeline", "targets"))
             + forbidden_imports(ROOT / "edge", ("pipeline", "targets", "calibration")))
    assert not wrong, wrong


def test_board_side_has_no_host_packages():
    assert not forbidden_imports(ROOT / "edge", HOST_ONLY)
    code = ("import sys; import edge.preprocess, edge.latency, edge.runners.tensorrt, edge.runners, targets.onnx, targets.openvino; "
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


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module: each is an import circle."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_circle():
    """No two modules import each other, directly or round about, at the top or inside a function
    (edge.runners and edge.tensorrt_engine did: each runtime's module builds on edge.runners.base now)."""
    from pipeline import sources

    names = [".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
             for package in ("pipeline", "targets", "calibration", "edge") for p in (ROOT / package).rglob("*.py")]
    graph = {m: {i for i in sources._imports(m, ROOT) if i in names and i != m} for m in names}
    assert not _strongly_connected(graph)
    # nor two rooms (pipeline/stages/, pipeline/chain.py, ...): an arrow back up, as stages/report.py -> chain.py was
    rooms = {m: ".".join(m.split(".")[:2]) for m in names}
    room_graph: dict[str, set[str]] = {}
    for m, imported in graph.items():
        room_graph.setdefault(rooms[m], set()).update(rooms[i] for i in imported if rooms[i] != rooms[m])
    assert not _strongly_connected(room_graph)


def test_no_caller_branches_on_a_runtime_name(tmp_path):
    """Throughput mode asks the runtime's registry entry (its own queue, or lanes of runners, or neither); the Jetson
    target names a registry entry instead of rewriting a runner (edge.runners.RUNTIMES)."""
    import inspect

    import edge.inflight
    import targets.jetson
    from edge.errors import UserError
    from edge.inflight import open_in_flight
    from edge.runners import RUNTIMES

    for module in (edge.inflight, targets.jetson):
        assert not re.search(r'== "(openvino|onnxruntime|litert|tensorrt)"|\.runtime \+=', inspect.getsource(module))
    with pytest.raises(UserError, match="tensorrt runs one frame at a time"):
        open_in_flight("tensorrt", tmp_path / "model.onnx")  # refused before anything is loaded
    assert RUNTIMES["openvino"].own_queue is not None and RUNTIMES["onnxruntime"].lanes


def test_no_class_is_a_whole_recipe():
    """No class over 150 lines in the project's code: the deploy recipe is stages in modules (pipeline/stages/), not
    one class of memoized methods (the Deploy class was 455)."""
    long = [f"{p.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for package in ("pipeline", "targets", "calibration", "edge") for p in sorted((ROOT / package).rglob("*.py"))
            for node in ast.walk(ast.parse(p.read_text())) if isinstance(node, ast.ClassDef)
            and node.end_lineno - node.lineno + 1 > 150]
    assert not long, long
