"""The run folder: one subfolder per stage, skipped when its inputs are unchanged.

A stage writes into a temporary folder; its record (`stage.json`: the key, the result
and the sha256 of every file) is written last and the folder is renamed into place in
one step, so an interrupted run never leaves a half-written artifact a later run trusts.
What it holds gets the user's normal permissions (the umask's), so another user on the board can read it.
A run folder belongs to one run (`run.json`: its model and target); another run is refused, not let in
to replace that run's artifacts and report.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

from edge.files import file_sha256 as sha256  # noqa: F401  (re-exported)
from edge.files import umask, write_atomic
from pipeline import PipelineError

RECORD = "stage.json"
RUN_RECORD = "run.json"
# Where a folder written before run.json existed says what it holds: the stage that keyed on each field.
OLDER_RECORDS = (("model", "model"), ("float", "target"), ("int8", "target"), ("qat", "target"))


def normal_permissions(root: Path) -> None:
    """Give `root` and everything under it the modes a plain open()/mkdir() would (0644/0755 under umask 022).

    tempfile's mkdtemp/mkstemp make 0700/0600, private to the deployer: a stage folder renamed into place,
    the bundle and its tarball would stay unreadable to the board's other users.
    """
    mask, root = umask(), Path(root)
    for p in [root, *(root.rglob("*") if root.is_dir() else ())]:
        if p.is_symlink():
            continue
        executable = p.is_dir() or p.stat().st_mode & 0o111
        p.chmod((0o777 if executable else 0o666) & ~mask)


def _key_hash(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


class Stage:
    """A finished stage: its folder, its result dict and a digest of everything it wrote."""

    def __init__(self, folder: Path, record: dict, skipped: bool):
        self.folder = folder
        self.result = record["result"]
        self.digest = record["digest"]
        self.seconds = record.get("seconds", 0.0)
        self.skipped = skipped

    def path(self, name: str) -> Path:
        return self.folder / name

    @property
    def artifact(self) -> Path:
        """The model file this stage made (its result's "artifact")."""
        return self.folder / self.result["artifact"]


def _read_json(path: Path) -> dict:
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def held_by(root: Path) -> dict:
    """The identity of the run a folder holds: run.json, else what an older run left (report.json, stage keys)."""
    root = Path(root)
    if held := _read_json(root / RUN_RECORD):
        return held
    report = _read_json(root / "report.json")
    held = {k: report[k] for k in ("model", "target") if isinstance(report.get(k), str)}
    for stage, field in OLDER_RECORDS:
        value = _read_json(root / stage / RECORD).get("key", {}).get(field)
        if isinstance(value, str):
            held.setdefault(field, value)
    return held


def _claim(root: Path, identity: dict) -> None:
    """Refuse a folder that holds another run (before anything in it changes); record this run in it."""
    held = held_by(root)
    if any(k in held and held[k] != v for k, v in identity.items()):
        def say(d):
            return ", ".join(f"{k} {d[k]}" for k in identity if k in d)

        raise PipelineError(
            f"run folder {root} holds another run ({say(held)}); this one ({say(identity)}) would replace its "
            f"artifacts and report: pass another OUT= (e.g. OUT={root.parent / '-'.join(map(str, identity.values()))}) "
            f"or delete {root}")
    if _read_json(root / RUN_RECORD) != {**held, **identity}:
        write_atomic(root / RUN_RECORD, json.dumps({**held, **identity}, indent=2, sort_keys=True))


class RunFolder:
    """`identity` (e.g. {"model": "b0", "target": "onnx"}) is the run this folder belongs to; None claims nothing."""

    def __init__(self, root: Path, log: Callable[[str], None] = print, identity: dict | None = None):
        self.root = Path(root)
        self.log = log
        if identity:
            _claim(self.root, identity)
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.glob(".tmp-*"):  # left by an interrupted run: never trusted
            shutil.rmtree(stale, ignore_errors=True)

    def _valid_record(self, folder: Path, key_hash: str) -> dict | None:
        try:
            record = json.loads((folder / RECORD).read_text())
        except (OSError, ValueError):
            return None
        if record.get("key_hash") != key_hash:
            return None
        for rel, digest in record.get("files", {}).items():
            f = folder / rel
            if not f.is_file() or sha256(f) != digest:
                return None
        return record

    def stage(self, name: str, key: dict, work: Callable[[Path], dict]) -> Stage:
        """Run `work(tmpdir) -> result` unless a finished stage with the same key exists."""
        folder = self.root / name
        key_hash = _key_hash(key)
        record = self._valid_record(folder, key_hash)
        if record is not None:
            self.log(f"[{name}] unchanged, skipped")
            return Stage(folder, record, skipped=True)
        self.log(f"[{name}] running")
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".tmp-{name}-"))
        try:
            t0 = time.perf_counter()
            result = work(tmp)
            seconds = time.perf_counter() - t0
            files = {str(p.relative_to(tmp)): sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
            digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
            record = {
                "stage": name,
                "key": key,
                "key_hash": key_hash,
                "result": result,
                "files": files,
                "digest": digest,
                "seconds": round(seconds, 3),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            (tmp / RECORD).write_text(json.dumps(record, indent=2, default=str))
            normal_permissions(tmp)
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(tmp, folder)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        self.log(f"[{name}] done in {seconds:.1f}s")
        return Stage(folder, record, skipped=False)
