"""make capture: frames from the board's own camera, brought back here for make deploy CALIB=<folder>.

The board runs `./run.sh capture` (edge.capture: the camera program's capture path, frames spread over
time, near-duplicates skipped) into `captures/<name>` in its bundle's folder; the folder comes back
with push's ssh options (rsync, else scp) into a hidden folder renamed to OUT when complete. Without a
DEVICE the same capture runs here. Either way OUT is whole or absent: a source that gives fewer
frames, a full disk, or ssh dropping half-way is one line, and nothing is left here.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from edge.capture import MANIFEST, CaptureOptions
from edge.errors import UserError
from pipeline import PipelineError
from pipeline.ship import push

SSH_FAILED = 255  # ssh's own exit status: the connection, not the remote command
REMOTE_SH = ('cd "$1" 2>/dev/null && [ -x run.sh ] || { echo "error: no bundle in $1" >&2; exit 127; }\n'
             'shift && exec ./run.sh capture "$@"')


@dataclass(frozen=True)
class CaptureConfig:
    capture: CaptureOptions
    source: str | None = None  # default: the bundle's camera on the board, camera 0 here
    out: str | None = None  # default: runs/capture-<date-time>
    device: push.Device | None = None

    @property
    def folder(self) -> Path:
        return Path(self.out or f"runs/capture-{time.strftime('%Y%m%d-%H%M%S')}")


def capture(cfg: CaptureConfig, log=print) -> Path:
    """Capture COUNT frames into cfg.folder (on the board with a DEVICE, else here); the folder."""
    out = cfg.folder
    if out.exists():
        raise PipelineError(f"{out} already exists: a capture never overwrites; pass another OUT")
    if cfg.device is None:
        from edge.capture import capture as capture_here

        try:
            capture_here(cfg.source or "0", out, cfg.capture)
        except UserError as e:
            raise PipelineError(str(e)) from None
    else:
        _on_board(cfg, out, log)
    log(f"[capture] {cfg.capture.count} frames in {out}; calibrate on them: make deploy CALIB={out} ...")
    return out


def _on_board(cfg: CaptureConfig, out: Path, log) -> None:
    device, remote = cfg.device, f"captures/{out.name}"
    push.reach(device)
    o = cfg.capture
    args = ["--out", remote, "--count", str(o.count), "--every", str(o.every), "--stride", str(o.stride),
            "--min-change", str(o.min_change), *(["--source", cfg.source] if cfg.source else [])]
    log(f"[capture] {o.count} frames on {device.address} (./run.sh capture in {device.dest})")
    _remote(device, args)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        push.fetch(device, remote, tmp, log)
        if not (tmp / MANIFEST).is_file():
            raise PipelineError(f"the board's {remote} came back without {MANIFEST}: nothing kept; run make capture again")
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(device.sh('cd "$1" && rm -rf "$2"', device.dest, remote), capture_output=True)  # here now: free the board's disk


def _remote(device: push.Device, args: list[str]) -> None:
    """./run.sh capture over ssh, its progress shown as it comes; a failure is its one line, or ssh's."""
    proc = subprocess.Popen(device.sh(REMOTE_SH, device.dest, *args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    last = ""
    for line in proc.stderr:
        last = line.strip() or last
        if line.startswith("capture: "):
            print(line, end="", file=sys.stderr, flush=True)
    rc = proc.wait()
    if rc == SSH_FAILED or rc < 0:  # ssh's own failure, or ssh killed
        raise PipelineError(f"ssh to {device.address} dropped during the capture ({last or f'exit {rc}'}): nothing was brought "
                            "back; run make capture again")
    if rc in (126, 127):  # the shell found no ./run.sh there
        raise PipelineError(f"no bundle in {device.dest} on {device.address} ({last}): make push DEVICE=... first")
    if rc != 0:
        raise PipelineError(f"capture on {device.address} failed: {last.removeprefix('error: ')}")
