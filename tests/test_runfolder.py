"""Stages are skipped when unchanged, redone when changed, and never trusted half-written."""
from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path

import pytest

from pipeline.runfolder import RunFolder


def _writer(calls, text="hello"):
    def work(tmp):
        calls.append(1)
        (tmp / "out.txt").write_text(text)
        return {"n": len(calls)}

    return work


def test_skip_when_unchanged_redo_when_key_changes(tmp_path):
    logs, calls = [], []
    run = RunFolder(tmp_path, logs.append)
    a = run.stage("s", {"k": 1}, _writer(calls))
    b = run.stage("s", {"k": 1}, _writer(calls))
    assert len(calls) == 1 and b.skipped and not a.skipped and b.digest == a.digest
    assert "[s] unchanged, skipped" in logs
    c = run.stage("s", {"k": 2}, _writer(calls, "other"))
    assert len(calls) == 2 and not c.skipped and c.digest != a.digest


def test_tampered_artifact_is_redone(tmp_path):
    calls = []
    run = RunFolder(tmp_path, lambda m: None)
    s = run.stage("s", {"k": 1}, _writer(calls))
    (s.folder / "out.txt").write_text("edited by hand")
    run.stage("s", {"k": 1}, _writer(calls))
    assert len(calls) == 2 and (s.folder / "out.txt").read_text() == "hello"


def test_interrupted_stage_keeps_the_previous_artifact(tmp_path):
    calls = []
    run = RunFolder(tmp_path, lambda m: None)
    run.stage("s", {"k": 1}, _writer(calls))

    def crash(tmp):
        (tmp / "out.txt").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run.stage("s", {"k": 2}, crash)
    assert (tmp_path / "s" / "out.txt").read_text() == "hello"
    assert not list(tmp_path.glob(".tmp-*"))
    # The old result is still valid for its own key, and the new key is still to do.
    assert run.stage("s", {"k": 1}, _writer(calls)).skipped
    assert not run.stage("s", {"k": 2}, _writer(calls)).skipped


def test_stale_temp_folders_are_cleared(tmp_path):
    (tmp_path / ".tmp-s-abc").mkdir(parents=True)
    RunFolder(tmp_path, lambda m: None)
    assert not (tmp_path / ".tmp-s-abc").exists()


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_stage_folders_reports_and_the_tarball_get_normal_permissions(tmp_path, umask_022):
    """Not tempfile's private 0700/0600: a board user other than the deployer reads the results (umask 022)."""
    import tarfile

    from pipeline.ship import report

    from pipeline.ship import bundle
    from edge.files import write_atomic

    def work(tmp):
        (tmp / "plain.txt").write_text("x")
        fd, private = tempfile.mkstemp(dir=tmp)  # 0600, as a library's temporary file renamed into place
        os.close(fd)
        os.replace(private, tmp / "model.bin")
        Path(tempfile.mkdtemp(dir=tmp)).rename(tmp / "sub")  # 0700
        (tmp / "run.sh").write_text("#!/bin/sh\n")
        (tmp / "run.sh").chmod(0o700)
        return {}

    s = RunFolder(tmp_path, lambda m: None).stage("bundle", {"k": 1}, work)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [s.folder, *s.folder.iterdir()]}
    assert modes == {"bundle": 0o755, "plain.txt": 0o644, "model.bin": 0o644, "sub": 0o755, "run.sh": 0o755,
                     "stage.json": 0o644}
    assert report.write_atomic is write_atomic  # report.json and report.md are written with it
    write_atomic(tmp_path / "report.json", "{}")
    assert stat.S_IMODE((tmp_path / "report.json").stat().st_mode) == 0o644
    bundle.write_tarball(s.folder, tmp_path / "bundle.tar.gz")
    with tarfile.open(tmp_path / "bundle.tar.gz") as tar:
        assert {m.name: m.mode for m in tar.getmembers()}["bundle"] == 0o755


def _snapshot(root):
    return {str(p): (p.read_bytes() if p.is_file() else None, p.stat().st_mtime_ns) for p in [root, *root.rglob("*")]}


def test_a_folder_holding_another_run_is_refused_untouched(tmp_path):
    """OUT= an OpenVINO run folder for an ONNX run: one line naming the folder, what it holds and the fix; nothing changes."""
    from pipeline import PipelineError
    from edge.files import write_atomic

    ov = {"model": "lite0", "target": "openvino"}
    run = RunFolder(tmp_path, lambda m: None, identity=ov)
    run.stage("float", {"target": "openvino"}, _writer([]))
    write_atomic(tmp_path / "report.json", '{"model": "lite0", "target": "openvino"}')
    (tmp_path / ".tmp-int8-abc").mkdir()  # an interrupted stage: not cleared by a refused run either
    before = _snapshot(tmp_path)
    with pytest.raises(PipelineError) as e:
        RunFolder(tmp_path, lambda m: None, identity={"model": "lite0", "target": "onnx"})
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path) in msg and "target openvino" in msg and "target onnx" in msg
    assert "another OUT=" in msg and f"delete {tmp_path}" in msg
    assert _snapshot(tmp_path) == before
    RunFolder(tmp_path, lambda m: None, identity=ov)  # its own run comes back in


def test_an_older_folder_without_run_json_is_known_by_its_records(tmp_path):
    """A folder written before run.json: its stage keys (or report.json) say what it holds."""
    from pipeline import PipelineError

    RunFolder(tmp_path, lambda m: None).stage("model", {"model": "b0", "code": "x"}, _writer([]))
    RunFolder(tmp_path, lambda m: None).stage("int8", {"target": "tflite"}, _writer([]))
    before = _snapshot(tmp_path)
    with pytest.raises(PipelineError, match=r"model b0, target tflite\); this one \(model b1, target tflite\)"):
        RunFolder(tmp_path, lambda m: None, identity={"model": "b1", "target": "tflite"})
    assert _snapshot(tmp_path) == before
    RunFolder(tmp_path, lambda m: None, identity={"model": "b0", "target": "tflite"})
    assert json.loads((tmp_path / "run.json").read_text()) == {"model": "b0", "target": "tflite"}
