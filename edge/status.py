"""The camera program's status, for a fleet: which board, which release and model, how fast, how faithful.

Every `every` seconds (and once at the first frame and at exit) the status goes to a file on the board (written
whole: the rollout's health check reads it) and, with --mqtt, to `<prefix>/status/<board>` as a **retained** message,
so a subscriber that arrives later still sees every board's last word at once (make fleet-status).
Device side: numpy only.
"""
from __future__ import annotations

import json
import os
import platform
import socket
import time
from collections import deque
from pathlib import Path

import numpy as np

from edge.files import write_atomic
from edge.isa import detect as detect_isa


def release_of(bundle_root: Path) -> str:
    """The release a bundle is: its folder's name under releases/ (make rollout names it by the bundle's content hash),
    else "unreleased" (a bundle pushed or copied by hand)."""
    root = Path(bundle_root).resolve()
    return root.name if root.parent.name == "releases" else "unreleased"


class StatusReporter:
    """An emitter of the camera loop (called with each frame's record) that keeps the board's status."""

    def __init__(self, bundle, board: str | None, path: str | None, mqtt=None, topic: str = "effnet-edge/status",
                 every: float = 5.0, shadow=None, runtime: str = ""):
        self.board = board or socket.gethostname()
        self.path, self.mqtt, self.topic, self.every, self.shadow = path, mqtt, f"{topic}/{self.board}", every, shadow
        cfg = bundle.config
        self.fixed = {"board": self.board, "release": release_of(bundle.root), "model": cfg["model"], "quant": cfg["quant"],
                      "target": cfg["target"], "runtime": runtime, "isa": detect_isa(), "machine": platform.machine(),
                      # deploy's own word (its gate resolved on the host's images), not make rollout's proof on this board
                      "verified_at_deploy": bool(cfg.get("verified", True)), "pid": os.getpid()}
        self.frames, self.started = 0, time.time()
        self.recent: deque = deque(maxlen=300)  # (wall time, latency ms) of the last frames
        self.last_sent = 0.0

    def __call__(self, record: dict) -> None:
        self.frames += 1
        self.recent.append((record["t"], record["latency_ms"]))
        if self.frames == 1 or record["t"] - self.last_sent >= self.every:
            self.send("running")

    def status(self, state: str) -> dict:
        times = np.array([t for t, _ in self.recent])
        latency = np.array([ms for _, ms in self.recent])
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else None
        return {**self.fixed, "state": state, "t": round(time.time(), 3), "up_s": round(time.time() - self.started, 1),
                "frames": self.frames, "fps": round(fps, 2) if fps else None,
                # a frame's work in the camera loop (preprocessing + inference + top-k), over the last frames
                "frame_latency_ms": {"p50": round(float(np.percentile(latency, 50)), 3),
                                     "p99": round(float(np.percentile(latency, 99)), 3), "frames": len(latency)}
                if len(latency) else None,
                "shadow": self.shadow.snapshot() if self.shadow else None,
                "alerts": [self.shadow.alert] if self.shadow and self.shadow.alert else []}

    def send(self, state: str) -> None:
        status = self.status(state)
        self.last_sent = status["t"]
        if self.path:
            write_atomic(Path(self.path), json.dumps(status))
        if self.mqtt:
            self.mqtt.retain(self.topic, status)

    def close(self) -> None:
        self.send("stopped")
