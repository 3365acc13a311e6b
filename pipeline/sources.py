"""The source a stage runs, for its cache key: a stage is redone when its own code changes, not when any file does.

A stage starts from its own module (pipeline/stages/, see pipeline.chain.code_digest); every module of this project
it imports, at the top or inside a function, is read from the source (ast) and followed, with the packages that hold
them. So rewording the report redoes the report and the bundle (whose README carries its words), nothing before them.
"""
from __future__ import annotations

import ast
import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pipeline", "targets", "edge", "calibration")


def _file(name: str, root: Path) -> Path | None:
    path = root.joinpath(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def _run_time_nodes(tree: ast.AST):
    """Every node of `tree` but those under `if TYPE_CHECKING:`, which never runs (annotations only)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                todo.extend(child.orelse)
            else:
                todo.append(child)


def _imports(name: str, root: Path) -> set[str]:
    """This project's modules that module `name` imports anywhere in its source (relative imports resolved)."""
    path = _file(name, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _run_time_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found |= {base} | {f"{base}.{a.name}" for a in node.names}  # `from pkg import module` names a module
    return {m for m in found if m.split(".")[0] in PACKAGES and _file(m, root)}


def modules(entries: tuple[str, ...], root: Path = ROOT) -> list[str]:
    """`entries` and every project module they import, directly or not (with the packages that hold them)."""
    seen: set[str] = set()
    todo = list(entries)
    while todo:
        name = todo.pop()
        if name in seen or _file(name, root) is None:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += sorted(_imports(name, root))
    return sorted(seen)


def digest(*entries: str, root: Path = ROOT) -> str:
    """A hash of the source of `entries` and what they import."""
    h = hashlib.sha256()
    for name in modules(entries, root):
        h.update(name.encode() + b"\0" + _file(name, root).read_bytes())
    return h.hexdigest()[:16]
