"""The camera program's frame rate on a generated video, against the bare inference rate of the same artifact."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from targets import get_target


def camera_loop_rate(deployed_ov: dict, preprocess, out: Path, threads: int, frames: int) -> dict:
    """The camera program's frames/s on a generated video vs the bare inference rate of the same artifact."""
    import cv2

    from edge.latency import measure
    from edge.loop import LoopOptions, run_loop
    from edge.sources import Grabber, open_source
    from pipeline.sample_data import CALIBRATION_PHOTOS, _skimage_photo

    photos = [cv2.resize(cv2.imread(str(_skimage_photo(p))), (640, 480)) for p in CALIBRATION_PHOTOS]
    video = out / "camera.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 480))
    for i in range(frames):
        writer.write(photos[(i // 10) % len(photos)])
    writer.release()
    runner = get_target("openvino").runner(deployed_ov["int8"], threads, "f32")
    size = preprocess.image_size
    bare = measure(runner.infer, np.zeros((1, 3, size, size), np.float32), warmup=20, runs=200)
    names = [str(i) for i in range(1000)]
    result = {"bare_inference_fps": bare["throughput_fps"], "inference_p50_ms": bare["p50"]}
    for mode, latest, pace in (("every frame", False, 0), ("live at 30 fps", True, 30)):
        grabber = Grabber(open_source(str(video)), latest_only=latest, pace_fps=pace, prepare=preprocess)
        summary = run_loop(runner, preprocess, names, grabber, LoopOptions(stats_every=0), lambda r: None, threading.Event())
        result[mode] = {k: summary[k] for k in ("classified", "fps", "dropped_stale", "age_ms", "preprocess_ms", "inference_ms", "latency_ms")}
    result["loop_loss"] = 1 - result["every frame"]["fps"] / bare["throughput_fps"]
    result["throughput mode"] = throughput_mode_rate(deployed_ov["int8"], preprocess, names, video, threads)
    float_runner = get_target("openvino").runner(deployed_ov["float"], 1, "f32")  # --shadow-threads' default
    result["shadow"] = shadow_cost(runner, float_runner, preprocess, names, video, result["every frame"]["fps"])
    return result


def throughput_mode_rate(artifact: Path, preprocess, names: list[str], video: Path, threads: int, frames: int = 200) -> dict:
    """The camera program in --mode throughput (OpenVINO's AsyncInferQueue, THROUGHPUT hint) on every frame of the
    video, against the same queue kept full without a camera."""
    from edge.inflight import OpenVINOQueue
    from edge.loop import LoopOptions, run_loop
    from edge.sources import Grabber, open_source

    in_flight = OpenVINOQueue(artifact, threads)
    sample = np.zeros((1, 3, preprocess.image_size, preprocess.image_size), np.float32)
    in_flight_rate(in_flight, sample, 20)  # warm-up
    bare = in_flight_rate(in_flight, sample, frames)
    grabber = Grabber(open_source(str(video)), latest_only=False, prepare=preprocess)
    summary = run_loop(None, preprocess, names, grabber, LoopOptions(stats_every=0), lambda r: None, threading.Event(),
                       in_flight=in_flight)
    return {"in_flight": in_flight.depth, "runtime": in_flight.runtime, "bare_inference_fps": bare,
            "every frame": {k: summary[k] for k in ("classified", "fps", "age_ms", "preprocess_ms", "inference_ms")},
            "loop_loss": 1 - summary["fps"] / bare}


def in_flight_rate(in_flight, sample: np.ndarray, frames: int) -> float:
    """Images/s with `in_flight.depth` inferences always in flight."""
    from collections import deque

    futures: deque = deque()
    t0 = time.perf_counter()
    for _ in range(frames):
        if len(futures) >= in_flight.depth:
            futures.popleft().result()
        futures.append(in_flight.submit(sample))
    for future in futures:
        future.result()
    return frames / (time.perf_counter() - t0)


SHADOW_EVERY = (10, 1)


def shadow_cost(runner, float_runner, preprocess, names: list[str], video: Path, base_fps: float) -> dict:
    """The camera program's frame rate with --shadow N (float beside int8 on its own thread) against without it,
    every frame of the same video: the CPU the float model takes from the int8 path."""
    from edge.loop import LoopOptions, run_loop
    from edge.shadow import ShadowCheck, ShadowOptions
    from edge.sources import Grabber, open_source

    rows = {}
    for every in SHADOW_EVERY:
        shadow = ShadowCheck(float_runner, ShadowOptions(every), lambda *_: None)
        grabber = Grabber(open_source(str(video)), latest_only=False, prepare=preprocess)
        summary = run_loop(runner, preprocess, names, grabber, LoopOptions(stats_every=0), lambda r: None,
                           threading.Event(), shadow=shadow)
        s = summary["shadow"]
        rows[f"1 in {every}"] = {"fps": summary["fps"], "fps_ratio": summary["fps"] / base_fps, "shadowed": s["frames"],
                                 "skipped_busy": s["skipped_busy"], "classified": summary["classified"]}
    return rows
