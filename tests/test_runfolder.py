"""Stages are skipped when unchanged, redone when changed, and never trusted half-written."""
from __future__ import annotations

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
