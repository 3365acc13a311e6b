"""Frame sources for the camera program, and a capture thread that keeps only the newest frame.

A live source (camera index, /dev/videoN, GStreamer pipeline, RTSP/HTTP URL) is read on its
own thread; a frame not yet classified when the next one arrives is dropped, so a slow model
never works on stale buffered frames. Files and image folders are read in order, every frame,
unless `realtime` paces them at their frame rate like a camera.
"""
from __future__ import annotations

import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.dataset import IMAGE_EXTENSIONS, list_images
from edge.errors import UserError
from edge.preprocess import read_image


@dataclass
class Frame:
    index: int  # position in the source
    image: np.ndarray
    t_capture: float  # time.monotonic() when it was read
    tensor: np.ndarray | None = None  # the model input, when the grabber prepared it
    prepared: np.ndarray | None = None  # what the runner's run() takes for it (Runner.prepare), when the grabber made it
    prepare_ms: float = 0.0
    capture_ms: float = 0.0  # the source's read: decoding (MJPEG), copying the frame out; a live camera's wait for it too
    file: str | None = None  # the image file it came from (image sources only)


class ImageFilesSource:
    """Image files in order (a folder's, sorted, or one image) as a finite source.

    `file` names the image last read, relative to the folder, so each decision says which file it is.
    """

    live = False

    def __init__(self, paths: list[Path], root: Path, fps: float):
        self.paths, self.root = paths, root
        self.fps = fps or 30.0
        self.pos = 0
        self.file: str | None = None

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.pos >= len(self.paths):
            return False, None
        path = self.paths[self.pos]
        self.pos += 1
        self.file = path.relative_to(self.root).as_posix()
        return True, read_image(path)  # None: a corrupt file, skipped by the caller

    def reopen(self) -> bool:
        return False

    def release(self) -> None:
        pass


class Picamera2Source:
    """The Raspberry Pi camera through Picamera2 (libcamera), when it is installed."""

    live = True
    file = None

    def __init__(self, width: int = 0, height: int = 0, fps: float = 0):
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise UserError("--source picamera2 needs Picamera2: sudo apt install python3-picamera2") from None
        self.camera = Picamera2()
        size = (width or 1280, height or 720)
        config = self.camera.create_video_configuration(main={"size": size, "format": "BGR888"})
        self.camera.configure(config)
        if fps:
            self.camera.set_controls({"FrameRate": fps})
        self.camera.start()
        self.fps = fps or 30.0

    def read(self) -> tuple[bool, np.ndarray | None]:
        try:
            img = self.camera.capture_array()
        except Exception:  # the camera went away: let the grabber reconnect
            return False, None
        return True, (img if img is not None and img.size else None)

    def reopen(self) -> bool:
        try:
            self.camera.stop()
            self.camera.start()
            return True
        except Exception:
            return False

    def release(self) -> None:
        self.camera.stop()


class VideoSource:
    """Anything cv2.VideoCapture opens: camera, V4L2 device, GStreamer pipeline, URL, video file."""

    file = None

    def __init__(self, spec: str, width: int = 0, height: int = 0, fps: float = 0):
        self.spec, self.width, self.height, self.req_fps = spec, width, height, fps
        self.target, self.backend, self.live = describe_source(spec)
        self.cap = None
        if not self._open():
            raise UserError(f"cannot open source {spec!r}: {self._hint()}")
        self.fps = fps or self.cap.get(cv2.CAP_PROP_FPS) or 30.0

    def _hint(self) -> str:
        if self.backend == cv2.CAP_GSTREAMER:
            return "check the pipeline with gst-launch-1.0 and that this OpenCV has GStreamer (cv2.getBuildInformation())"
        if isinstance(self.target, int) or str(self.target).startswith("/dev/video"):
            return "is the camera connected, and is this user in the 'video' group? (v4l2-ctl --list-devices)"
        if self.live:
            return "is the stream reachable from this machine?"
        return "is the file a video OpenCV can decode?"

    def _open(self) -> bool:
        if self.cap is not None:
            self.cap.release()
        # A source that does not open is our one line with its fix, not OpenCV's warnings before it.
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        try:
            self.cap = cv2.VideoCapture(self.target, self.backend)
        finally:
            cv2.utils.logging.setLogLevel(level)
        if not self.cap.isOpened():
            return False
        if self.live and self.backend != cv2.CAP_GSTREAMER:
            for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, self.width), (cv2.CAP_PROP_FRAME_HEIGHT, self.height),
                                (cv2.CAP_PROP_FPS, self.req_fps)):
                if value:
                    self.cap.set(prop, value)
            self.cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return True

    def read(self) -> tuple[bool, np.ndarray | None]:
        ok, img = self.cap.read()
        if not ok:
            return False, None
        return True, (img if img is not None and img.size else None)

    def reopen(self) -> bool:
        return self.live and self._open()

    def release(self) -> None:
        if self.cap is not None:
            self.cap.release()


def describe_source(spec: str):
    """(what to pass to VideoCapture, which backend, whether it is live)."""
    if re.fullmatch(r"\d+", spec):
        return int(spec), (cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY), True
    if spec.startswith("/dev/video"):
        return spec, cv2.CAP_V4L2, True
    if "!" in spec:
        return spec, cv2.CAP_GSTREAMER, True
    if re.match(r"^(rtsp|rtmp|http|https|udp|tcp)://", spec):
        return spec, cv2.CAP_FFMPEG, True
    if not Path(spec).exists():
        raise UserError(f"source {spec!r} is not a camera index, device, pipeline, URL, or an existing file/folder")
    return spec, cv2.CAP_ANY, False


def open_source(spec: str, width: int = 0, height: int = 0, fps: float = 0):
    spec = str(spec)
    if spec == "picamera2":
        return Picamera2Source(width, height, fps)
    path = Path(spec)
    if path.is_dir():
        paths = list_images(path)
        if not paths:
            raise UserError(f"source folder {path} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        return ImageFilesSource(paths, path, fps)
    if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
        return ImageFilesSource([path], path.parent, fps)
    return VideoSource(spec, width, height, fps)


class Grabber(threading.Thread):
    """Reads frames on its own thread. `latest_only`: keep only the newest, dropping the rest."""

    def __init__(self, source, latest_only: bool, pace_fps: float = 0, reconnect_tries: int = 10, log=None, prepare=None):
        super().__init__(daemon=True, name="grabber")
        self.source, self.latest_only, self.pace_fps = source, latest_only, pace_fps
        # Preprocessing here overlaps with inference on the previous frame instead of adding to it.
        self.prepare = prepare
        self.prepare_for_runner = None  # Runner.prepare on the prepared input's batch of one (edge.loop's latency mode sets it)
        self.reconnect_tries = reconnect_tries
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        self.cond = threading.Condition()
        self.slot: Frame | None = None
        self.finished = False
        self.error: str | None = None
        self.stop_event = threading.Event()
        self.counts = {"read": 0, "dropped_stale": 0, "corrupt": 0, "reconnects": 0}

    def run(self) -> None:
        index, next_due = 0, time.monotonic()
        try:
            while not self.stop_event.is_set():
                t_read = time.monotonic()
                ok, img = self.source.read()
                capture_ms = (time.monotonic() - t_read) * 1000
                if not ok:
                    if self._reconnect():
                        continue
                    break
                frame_index = index
                index += 1
                if self.pace_fps:  # a file played like a camera: one frame per 1/fps
                    next_due += 1.0 / self.pace_fps
                    time.sleep(max(0.0, next_due - time.monotonic()))
                if img is None:
                    self.counts["corrupt"] += 1
                    continue
                self.counts["read"] += 1
                frame = Frame(frame_index, img, time.monotonic(), capture_ms=capture_ms, file=self.source.file)
                if self.prepare is not None:
                    t0 = time.monotonic()
                    frame.tensor = self.prepare(img)
                    if self.prepare_for_runner is not None:
                        frame.prepared = self.prepare_for_runner(frame.tensor[None])
                    frame.prepare_ms = (time.monotonic() - t0) * 1000
                self._put(frame)
        finally:
            with self.cond:
                self.finished = True
                self.cond.notify_all()

    def _reconnect(self) -> bool:
        """A live source that stopped: reopen with exponential backoff; a file that ended: done."""
        if not self.source.live:
            return False
        delay = 0.5
        for attempt in range(1, self.reconnect_tries + 1):
            if self.stop_event.wait(delay):
                return False
            self.counts["reconnects"] += 1
            self.log(f"source lost; reconnect attempt {attempt}/{self.reconnect_tries}")
            if self.source.reopen():
                return True
            delay = min(delay * 2, 8.0)
        self.error = f"source lost and {self.reconnect_tries} reconnect attempts failed"
        return False

    def _put(self, frame: Frame) -> None:
        with self.cond:
            if not self.latest_only:
                while self.slot is not None and not self.stop_event.is_set():
                    self.cond.wait(0.1)
            elif self.slot is not None:
                self.counts["dropped_stale"] += 1
            self.slot = frame
            self.cond.notify_all()

    def get(self, timeout: float = 1.0) -> Frame | None:
        """The newest unclassified frame; None on timeout or when the source has ended."""
        with self.cond:
            if self.slot is None and not self.finished:
                self.cond.wait(timeout)
            frame, self.slot = self.slot, None
            self.cond.notify_all()
            return frame

    @property
    def done(self) -> bool:
        with self.cond:
            return self.finished and self.slot is None

    def stop(self) -> None:
        self.stop_event.set()
        with self.cond:
            self.cond.notify_all()
