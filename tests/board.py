"""Helpers for board-side tests: a board venv without torch, real servers on loopback, test videos."""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

BOARD_PACKAGES = ["numpy", "opencv-python-headless==5.0.0.93", "openvino==2026.4.1", "onnxruntime==1.32.0",
                  "ai-edge-litert==2.3.0", "paho-mqtt>=2.0"]


def board_venv() -> Path:
    """A virtual environment with only what a board installs (no torch, no nncf), made once per machine."""
    key = hashlib.sha256(" ".join(BOARD_PACKAGES).encode()).hexdigest()[:10]
    venv = Path(os.environ.get("TMPDIR", "/tmp")) / f"effnet-edge-board-venv-{key}"
    python = venv / "bin" / "python"
    if not (venv / ".complete").exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *BOARD_PACKAGES], check=True)
        (venv / ".complete").touch()
    return python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_video(path: Path, frames: list[np.ndarray], fps: float = 30) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()
    return path


class MjpegServer:
    """An MJPEG-over-HTTP camera on loopback; each connection streams `frames_per_connection` frames and ends.
    `frame` is one picture, or a list shown in turn (a scene that changes)."""

    def __init__(self, frame: np.ndarray | list[np.ndarray], frames_per_connection: int, interval: float = 0.01):
        payloads = [cv2.imencode(".jpg", f)[1].tobytes() for f in (frame if isinstance(frame, list) else [frame])]

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                for i in range(frames_per_connection):
                    payload = payloads[i % len(payloads)]
                    try:
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(payload)).encode() + b"\r\n\r\n" + payload + b"\r\n")
                    except OSError:
                        return
                    time.sleep(interval)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/stream.mjpg"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")
