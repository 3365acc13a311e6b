"""The `effnet-edge` console script and --version: the same commands as `python -m pipeline`."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import cli

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT_VERSION = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)


def test_version_from_the_entry_functions(capsys):
    for entry, prog in ((cli.main, "python -m pipeline"), (cli.script, "effnet-edge")):
        with pytest.raises(SystemExit) as e:
            entry(["--version"])
        assert e.value.code == 0 and capsys.readouterr().out.strip() == f"{prog} {PYPROJECT_VERSION}"


def test_version_without_installed_metadata_reads_pyproject(monkeypatch):
    from importlib import metadata

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    assert cli.version() == PYPROJECT_VERSION


def test_the_script_runs_the_same_commands(tmp_path, capsys):
    assert cli.script(["models"]) == 0
    assert "lite0" in capsys.readouterr().out
    assert cli.script(["deploy", "--target", "onnx", "--set", "quant.preset=accurate", "--out", str(tmp_path / "r")]) == 1
    assert capsys.readouterr().err.strip() == "error: unknown quant.preset='accurate'; use one of auto, mixed, performance"
    with pytest.raises(SystemExit) as e:
        cli.script(["deploy", "--quant", "fp4"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "\n" not in err and err.endswith("(see effnet-edge deploy --help)"), err


def test_the_installed_script(tmp_path):
    """Where the venv has the script (`pip install -e .` makes it), it is the same program under its own name."""
    script = shutil.which("effnet-edge", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("effnet-edge is not installed in this environment (pip install -e . makes it)")
    r = subprocess.run([script, "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == f"effnet-edge {PYPROJECT_VERSION}"
    r = subprocess.run([script, "deploy", "--target", "onnx", "--set", "quant.preset=accurate", "--out", str(tmp_path / "r")],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.strip() == "error: unknown quant.preset='accurate'; use one of auto, mixed, performance"
    assert not (tmp_path / "r").exists()
