"""`./run.sh capture`: the board's own frames, for calibration and label-free validation (make capture).

Frames come through the camera program's own capture path (edge.sources: open_source and the Grabber),
so they are what the model will see. They are spread out, because neighbouring frames of a camera
are nearly the same picture and would weigh one scene many times:
- a live source keeps at most one frame every `every` seconds (the Grabber hands over the newest);
- a file or image folder keeps one frame in `stride`, by default its length / COUNT, so the frames
  span the whole file.
A frame is a near-duplicate, and skipped, when the mean absolute difference of its 32x32 grey
thumbnail from the last kept frame's is under `min_change` grey levels (of 255): a camera on a still
scene gives many of those, sensor noise alone gives about 1-2.

Frames are written as JPEG (quality 95) with `capture.json` (source, settings, each frame's index
and time) into a hidden folder beside OUT, renamed to OUT only when all COUNT are there: a full disk,
a source that gives fewer, a lost ssh session or a signal leave nothing half-written.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.errors import UserError
from edge.sources import Grabber, ImageFilesSource, open_source

MANIFEST = "capture.json"
FORMAT = "effnet-edge-capture/1"
THUMB = 32


@dataclass(frozen=True)
class CaptureOptions:
    count: int
    every: float = 1.0  # live sources: seconds between kept frames
    stride: int = 0  # files and folders: keep one frame in `stride`; 0 = length / count
    min_change: float = 3.0  # grey levels: a smaller thumbnail difference from the last kept frame is a near-duplicate
    quality: int = 95  # JPEG


def thumbnail(image: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    return cv2.resize(grey, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32)


def source_length(source) -> int:
    """Frames a file or folder holds (0: unknown or live)."""
    if isinstance(source, ImageFilesSource):
        return len(source.paths)
    if source.live or getattr(source, "cap", None) is None:
        return 0
    return max(int(source.cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)


class Selector:
    """Which frames to keep: spread over time (live) or over the file (stride), near-duplicates skipped."""

    def __init__(self, opts: CaptureOptions, live: bool, length: int):
        self.opts, self.live = opts, live
        spread = max(1, length // opts.count) if length else 1  # over the whole file, when its length is known
        self.stride = 1 if live else (opts.stride or spread)
        self.last_thumb: np.ndarray | None = None
        self.last_t = -1e9
        self.near_duplicates = 0

    def keep(self, index: int, image: np.ndarray, t: float) -> bool:
        if self.live and t - self.last_t < self.opts.every:
            return False
        if not self.live and index % self.stride:
            return False
        thumb = thumbnail(image)
        if self.last_thumb is not None and float(np.abs(thumb - self.last_thumb).mean()) < self.opts.min_change:
            self.near_duplicates += 1
            return False
        self.last_thumb, self.last_t = thumb, t
        return True


def capture(spec: str, out: str | Path, opts: CaptureOptions, size=(0, 0, 0.0), reconnect: int = 10,
            stop: threading.Event | None = None, log=None) -> dict:
    """Capture `opts.count` frames from `spec` into the folder `out` (made whole, or not at all); returns the manifest."""
    out = Path(out)
    if opts.count < 1:
        raise UserError(f"--count {opts.count}: capture at least 1 frame")
    if out.exists():
        raise UserError(f"{out} already exists: a capture never overwrites; pass another --out")
    stop = stop or threading.Event()
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    source = open_source(spec, *size)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        tmp.mkdir(parents=True)
        manifest = _fill(source, tmp, spec, opts, reconnect, stop, log)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        tmp.rename(out)
        return manifest
    except OSError as e:
        raise UserError(f"cannot write the capture to {out.parent} ({e.strerror or e}): nothing kept; "
                        "free some space or pass --out on another disk") from None
    finally:
        source.release()
        shutil.rmtree(tmp, ignore_errors=True)


def _fill(source, folder: Path, spec: str, opts: CaptureOptions, reconnect: int, stop, log) -> dict:
    """Read frames through the camera program's Grabber and write the kept ones into `folder`."""
    selector = Selector(opts, source.live, source_length(source))
    grabber = Grabber(source, latest_only=source.live, reconnect_tries=reconnect, log=log)
    frames, t0, step = [], time.monotonic(), max(1, opts.count // 20)
    last_log = t0
    grabber.start()
    try:
        while len(frames) < opts.count and not stop.is_set():
            frame = grabber.get(timeout=0.5)
            if frame is None:
                if grabber.done:
                    break
                continue
            if not selector.keep(frame.index, frame.image, frame.t_capture):
                continue
            name = f"frame_{len(frames):06d}.jpg"
            ok, jpeg = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, opts.quality])
            (folder / name).write_bytes(jpeg.tobytes())  # an OSError (full disk) ends the capture, nothing kept
            frames.append({"file": name, "frame": frame.index, "t": round(frame.t_capture - t0, 3)})
            if source.live and (len(frames) % step == 0 or time.monotonic() - last_log > 2):  # a file takes seconds
                log(f"capture: {len(frames)}/{opts.count} frames")  # a lost ssh session shows here (BrokenPipeError)
                last_log = time.monotonic()
    finally:
        grabber.stop()
        grabber.join(timeout=5)
    counts = {**grabber.counts, "near_duplicates": selector.near_duplicates}
    if stop.is_set():
        raise UserError(f"capture stopped after {len(frames)} of {opts.count} frames: nothing kept")
    if len(frames) < opts.count:
        raise UserError(_too_few(len(frames), opts, selector, counts, grabber.error))
    return {"format": FORMAT, "source": spec, "count": len(frames), "options": asdict(opts), "stride": selector.stride,
            "live": source.live, "counts": counts, "seconds": round(time.monotonic() - t0, 2),
            "machine": f"{platform.node()} ({platform.machine()})", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "frames": frames}


def _too_few(got: int, opts: CaptureOptions, selector: Selector, counts: dict, error: str | None) -> str:
    why = error or f"it ended after {counts['read']} frames"
    spread = (f"one in {selector.stride}" if not selector.live else f"one each {opts.every:g} s") + \
        f", {counts['near_duplicates']} near-duplicates skipped"
    fix = f"--count {got}" + (" or a smaller --stride" if selector.stride > 1 else "") + \
        (f" or a lower --min-change (now {opts.min_change:g})" if counts["near_duplicates"] else "")
    return f"the source gave {got} of the {opts.count} frames asked ({why}; kept {spread}): nothing kept; pass {fix}"


def main(args) -> int:
    """`./run.sh capture`: a signal (or the ssh session ending) stops it cleanly, with nothing left behind."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())

    def log(message: str) -> None:
        try:
            print(message, file=sys.stderr, flush=True)
        except BrokenPipeError:  # nobody reads any more: the ssh session that started us is gone
            stop.set()

    opts = CaptureOptions(args.count, args.every, args.stride, args.min_change)
    manifest = capture(args.source, args.out, opts, (args.width or 0, args.height or 0, args.fps or 0), args.reconnect, stop, log)
    c = manifest["counts"]
    log(f"captured {manifest['count']} frames into {args.out} in {manifest['seconds']:.1f} s "
        f"({c['read']} read, {c['near_duplicates']} near-duplicates skipped)")
    return 0
