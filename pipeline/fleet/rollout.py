"""make rollout / make rollback: a deployed bundle to a fleet of boards through the playbooks in playbooks/.

A rollout is: preflight on every board (reachable, Python with venv, room) before any is touched; then the canary,
then batches, each board getting the release beside its earlier ones, proving it there (the gate on its own runtime
and images, p99 against the budget), switching `current` atomically and checking the camera program comes back
classifying. Any failure stops the rollout: that board goes back to its previous release, boards not reached yet
are left alone. The record (JSON and Markdown) goes to the fleet's state folder, where make fleet-status reads it.
"""
from __future__ import annotations

import hashlib
import json
import tarfile
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from edge.dataset import list_images
from edge.files import write_atomic
from pipeline import PipelineError
from pipeline.fleet.ansible import inventory_hosts, reach_line, run_playbook
from pipeline.fleet.config import FleetConfig, RolloutConfig

HERE = Path(__file__).parent
VENV_ROOM_KB = 400 * 1024  # a release's venv (a runtime wheel, OpenCV, numpy) when its requirements are new to the board


def release_id(tarball: Path) -> str:
    """A release is named by its bundle's content: the same bundle is the same release on every board."""
    digest = hashlib.sha256()
    with open(tarball, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def rollout(fc: FleetConfig, rc: RolloutConfig, run_dir: Path, log=print) -> dict:
    tarball = Path(run_dir) / "bundle.tar.gz"
    if not tarball.is_file():
        raise PipelineError(f"no bundle at {tarball}: run make deploy first (a model that fails its gate ships no bundle)")
    config = json.loads(_bundle_file(tarball, "bundle/config.json"))
    boards = inventory_hosts(fc.fleet, fc.limit)
    images = None if rc.board_data else _images_here(rc, Path(run_dir))
    release = release_id(tarball)
    out = fc.state_dir / f"rollout-{time.strftime('%Y%m%d-%H%M%S')}-{release}"
    records = out / "boards"
    records.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        data_tar, data_id, board_data = _validation_images(rc, images, Path(tmp))
        extra = {**_common_vars(fc, records), "effnet_release": release, "effnet_bundle_tar": str(tarball.resolve()),
                 "effnet_serial": [rc.canary, rc.batch], "effnet_need_kb": _room_kb(tarball),
                 "effnet_budget_ms": rc.budget_ms, "effnet_strict": rc.strict, "effnet_keep": max(2, rc.keep),
                 "effnet_latency_runs": rc.latency_runs, "effnet_data_tar": data_tar, "effnet_data_id": data_id,
                 "effnet_board_data": board_data}
        log(f"[rollout] release {release} ({config['model']} {config['quant']}, {config['target']}) to {len(boards)} boards "
            f"of {fc.fleet}: canary {rc.canary}, then {rc.batch} at a time")
        t0 = time.monotonic()
        code, unreachable, failures = _play("rollout.yml", fc, extra, out, log)
    result = summarize(boards, records, unreachable, failures, release, config, time.monotonic() - t0, fc, rc)
    if code != 0 and result["complete"]:
        raise PipelineError(f"ansible-playbook exited {code} though every board switched: see {out / 'ansible.log'}")
    _write(out, fc.state_dir, result, "rollout")
    log(f"[rollout] {result['line']} ({result['seconds']:.0f} s; record in {out})")
    if not result["complete"]:
        raise PipelineError(result["line"])
    return result


def rollback(fc: FleetConfig, log=print) -> dict:
    """Every board back to its previous release, restarted and checked."""
    boards = inventory_hosts(fc.fleet, fc.limit)
    out = fc.state_dir / f"rollback-{time.strftime('%Y%m%d-%H%M%S')}"
    records = out / "boards"
    records.mkdir(parents=True)
    t0 = time.monotonic()
    code, unreachable, failures = _play("rollback.yml", fc, _common_vars(fc, records), out, log)
    rows = {b: _record(records, b) or _unrecorded(b, "", unreachable, failures, fc) for b in boards}
    failed = [r for r in rows.values() if r["result"] != "rolled back"]
    line = (f"{len(rows) - len(failed)} of {len(rows)} boards back on their previous release"
            + (f"; {failed[0]['board']}: {failed[0].get('why', failed[0]['result'])}" if failed else ""))
    result = {"command": "rollback", "boards": rows, "line": line, "complete": not failed, "seconds": round(time.monotonic() - t0, 1),
              "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    _write(out, fc.state_dir, result, "rollback")
    log(f"[rollback] {line}")
    if failed:
        raise PipelineError(line)
    return result


def _common_vars(fc: FleetConfig, records: Path) -> dict:
    return {"effnet_hosts": "all", "effnet_files": str(HERE / "files"), "effnet_records": str(records.resolve()),
            "effnet_health_s": fc.health_s, "effnet_dir_default": fc.board_dir, "effnet_camera_args_default": []}


def _play(playbook: str, fc: FleetConfig, extra: dict, out: Path, log) -> tuple[int, dict, dict]:
    vars_file = out / "vars.json"
    vars_file.write_text(json.dumps(extra, indent=2))
    return run_playbook(HERE / "playbooks" / playbook, fc.fleet, vars_file, out / "ansible.log", fc.forks, fc.limit, log)


def _bundle_file(tarball: Path, name: str) -> str:
    with tarfile.open(tarball) as tar:
        member = tar.extractfile(name)
        if member is None:
            raise PipelineError(f"{tarball} holds no {name}: rebuild it with make deploy")
        return member.read().decode()


def _room_kb(tarball: Path) -> int:
    """What a new release needs on a board: its archive, the unpacked bundle and a venv."""
    with tarfile.open(tarball) as tar:
        unpacked = sum(m.size for m in tar.getmembers())
    return (tarball.stat().st_size + unpacked) // 1024 + VENV_ROOM_KB


def _images_here(rc: RolloutConfig, run_dir: Path) -> Path:
    """The folder here whose images every board's gate runs on: DATA, else the deploy's own."""
    folder = Path(rc.data) if rc.data else _deploy_data(run_dir)
    if not folder.is_dir() or not list_images(folder):
        raise PipelineError(f"DATA={folder}: no images for the boards' gate (a labelled folder, one subfolder per class, "
                            "or frames from make capture); pass DATA=folder here or BOARD_DATA=folder on the boards")
    return folder


def _validation_images(rc: RolloutConfig, folder: Path | None, tmp: Path) -> tuple[str, str, str]:
    """(archive to copy, its id, the folder on the board) of the images the boards' gate runs on."""
    if folder is None:
        return "", "", rc.board_data
    archive = tmp / "data.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(folder)))
    data_id = release_id(archive)
    return str(archive), data_id, "{{ board_dir }}/data/" + data_id


def _deploy_data(run_dir: Path) -> Path:
    report = run_dir / "report.json"
    if not report.exists():
        raise PipelineError(f"{run_dir} has no report.json: pass DATA=labelled folder for the boards' gate")
    return Path(json.loads(report.read_text())["data"]["folder"])


def _record(records: Path, board: str) -> dict | None:
    path = records / f"{board}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _unrecorded(board: str, release: str, unreachable: dict, failures: dict, fc: FleetConfig) -> dict:
    """A board that wrote no record: unreachable, failed before its block (preflight), or never reached."""
    if board in unreachable:
        return {"board": board, "release": release, "result": "unreachable", "why": reach_line(board, unreachable[board], fc.fleet)}
    if board in failures:
        return {"board": board, "release": release, "result": "failed", "failed_step": "preflight", "why": f"{board}: {failures[board]}"}
    return {"board": board, "release": release, "result": "untouched"}


def summarize(boards: list[str], records: Path, unreachable: dict, failures: dict, release: str, config: dict,
              seconds: float, fc: FleetConfig, rc: RolloutConfig) -> dict:
    """Each board's outcome (switched, failed, unreachable, untouched) and the one line that says how it went."""
    rows = {b: _record(records, b) or _unrecorded(b, release, unreachable, failures, fc) for b in boards}
    for row in rows.values():
        row["phases_s"] = phases(row.get("marks"))
    switched = [b for b, r in rows.items() if r["result"] == "switched"]
    failed = [r for r in rows.values() if r["result"] in ("failed", "unreachable")]
    if not failed:
        line = f"release {release} runs on all {len(boards)} boards, each proven there"
    else:
        first = failed[0]
        where = f" at '{first['failed_step']}'" if first.get("failed_step") else ""
        before = (first.get("before") or {}).get("current")
        back = ((f"; it is back on {before}" if before else "; its first release was undone") if first.get("reverted") else
                "; it was not switched" if first["result"] == "failed" and first.get("failed_step") != "preflight" else "")
        untouched = sum(r["result"] == "untouched" for r in rows.values())
        preflight = not switched and all(r["result"] in ("untouched", "unreachable") or r.get("failed_step") == "preflight"
                                         for r in rows.values())
        line = (f"rollout stopped: {first['board']} failed{where}: {first.get('why', first['result'])}{back}. "
                + ("No board was changed." if preflight else f"{len(switched)} switched, {untouched} left untouched."))
    return {"command": "rollout", "release": release, "model": config["model"], "quant": config["quant"],
            "target": config["target"], "fleet": str(fc.fleet), "config": asdict(rc), "boards": rows,
            "switched": switched, "complete": len(switched) == len(boards), "line": line, "seconds": round(seconds, 1),
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


PHASES = (("release", "start", "release_in_place"), ("images", "release_in_place", "images_in_place"),
          ("proof", "images_in_place", "proven"), ("switch and health", "proven", "healthy"))


def phases(marks: dict | None) -> dict | None:
    """Seconds a board spent on each phase: its release in place (copy, unpack, venv), the images copied, the proof
    on the board (gate and latency), the switch until the camera program classified again."""
    if not marks or "healthy" not in marks:
        return None
    t = {k: float(v) for k, v in marks.items()}
    return {name: round(t[end] - t[begin], 1) for name, begin, end in PHASES} | {"total": round(t["healthy"] - t["start"], 1)}


def _write(out: Path, state_dir: Path, result: dict, name: str) -> None:
    text = json.dumps(result, indent=2, default=str)
    write_atomic(out / f"{name}.json", text)
    write_atomic(out / f"{name}.md", markdown(result))
    write_atomic(state_dir / f"last-{name}.json", text)


def markdown(result: dict) -> str:
    lines = [f"# {result['command'].capitalize()}" + (f" of release {result['release']} ({result['model']} {result['quant']}, "
                                                      f"{result['target']})" if result["command"] == "rollout" else ""), "",
             result["line"] + f" ({result['seconds']:.0f} s)", "",
             "| board | result | gate on the board | p50 / p99 ms on the board | camera running | seconds: release, images, proof, switch | why |",
             "|---|---|---|---|---|---|---|"]
    for board, r in result["boards"].items():
        proof = r.get("proof") or {}
        gate = (proof.get("gate") or {}).get("verdict", "")
        lat = proof.get("latency") or {}
        p = f"{lat['p50']:.2f} / {lat['p99']:.2f}" if lat else ""
        status = r.get("status") or {}
        running = f"{status.get('release')} ({status.get('frames')} frames)" if status else ""
        ph = r.get("phases_s")
        spent = ", ".join(f"{ph[name]:.0f}" for name, _, _ in PHASES) if ph else ""
        lines.append(f"| {board} | {r['result']} | {gate} | {p} | {running} | {spent} | {r.get('why', '')} |")
    return "\n".join(lines) + "\n"
