"""The camera program's frame rate on a generated video, against the bare inference rate of the same artifact."""
from __future__ import annotations

import threading
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
    float_runner = get_target("openvino").runner(deployed_ov["float"], 1, "f32")  # --shadow-threads' default
    result["shadow"] = shadow_cost(runner, float_runner, preprocess, names, video, result["every frame"]["fps"])
    return result


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
