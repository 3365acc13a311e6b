"""The bundle's entry point (`./run.sh`): the camera program, or `validate --data DIR`."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from edge.errors import UserError

BUNDLE_ROOT = Path(__file__).resolve().parent.parent


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--bundle", default=str(BUNDLE_ROOT), help="bundle folder (default: the one this program is in)")
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    return common


def _run_parser(sub) -> None:
    p = sub.add_parser("run", parents=[_common()], help="classify a camera, stream, video file or image folder (the default)")
    p.add_argument("--source", help="camera index, /dev/videoN, GStreamer pipeline, rtsp/http URL, video file or image folder (default: the profile's camera)")
    p.add_argument("--headless", action="store_true", help="no overlay window")
    p.add_argument("--json", metavar="PATH", help="write one JSON line per classified frame here ('-' = stdout, the default when headless)")
    p.add_argument("--topk", type=int, default=3, help="labels per frame (default 3)")
    p.add_argument("--smooth", type=int, default=0, help="average probabilities over about N frames (default off)")
    p.add_argument("--width", type=int, help="camera width")
    p.add_argument("--height", type=int, help="camera height")
    p.add_argument("--fps", type=float, help="camera frame rate (with --realtime: the rate a file is played at)")
    p.add_argument("--realtime", action="store_true", help="play a file/folder at its frame rate like a camera, dropping stale frames")
    p.add_argument("--max-frames", type=int, default=0, help="stop after N classified frames")
    p.add_argument("--mqtt", metavar="HOST[:PORT]", help="also publish each classification to this MQTT broker")
    p.add_argument("--mqtt-topic", default="effnet-edge/classification", help="MQTT topic")
    p.add_argument("--threads", type=int, help="runtime threads (default: the bundle's)")
    p.add_argument("--stats-every", type=float, default=5.0, help="seconds between live statistics on stderr (0 = off)")
    p.add_argument("--summary", metavar="PATH", help="also write the exit summary as JSON here")
    p.add_argument("--reconnect", type=int, default=10, help="reconnect attempts when a live source drops (default 10)")


def _validate_parser(sub) -> None:
    p = sub.add_parser("validate", parents=[_common()], help="accuracy and latency of this bundle's model on a labelled folder, with this board's runtime")
    p.add_argument("--data", required=True, help="labelled folder, one subfolder per class")
    p.add_argument("--out", help="where report.json/report.md go (default: BUNDLE/validation)")
    p.add_argument("--runs", type=int, default=100, help="timed runs for latency (default 100)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--max-images", type=int, default=0)
    p.add_argument("--threads", type=int)
    p.add_argument("--strict", action="store_true", help="an inconclusive verdict (too few images) exits 3 too")


def run(args, bundle) -> int:
    from edge.loop import LoopOptions, json_emitter, run_loop
    from edge.sources import Grabber, open_source

    camera = bundle.config.get("camera", {})
    source = open_source(args.source or camera.get("source", "0"), args.width or camera.get("width", 0),
                         args.height or camera.get("height", 0), args.fps or 0)
    latest_only = source.live or args.realtime
    pace = (args.fps or source.fps) if (args.realtime and not source.live) else 0
    grabber = Grabber(source, latest_only=latest_only, pace_fps=pace, reconnect_tries=args.reconnect, prepare=bundle.preprocess)
    runner = bundle.runner("int8", args.threads)
    verified = "" if bundle.config.get("verified", True) else (
        " (unverified: the host's validation images were too few to resolve MAX_DROP; run ./run.sh validate --data DIR)")
    print(f"effnet-edge: {bundle.config['model']} {bundle.config['quant']}{verified} on {runner.runtime}, "
          f"source {args.source or camera.get('source')}", file=sys.stderr)

    out = None
    if args.json and args.json != "-":
        out = open(args.json, "a")
    emitters = [json_emitter(out)] if out else ([json_emitter(sys.stdout)] if args.json == "-" or args.headless else [])
    mqtt = None
    if args.mqtt:
        from edge.mqtt import MqttPublisher

        mqtt = MqttPublisher(args.mqtt, args.mqtt_topic)
        emitters.append(mqtt.publish)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    opts = LoopOptions(args.topk, args.smooth, args.headless, args.max_frames, args.stats_every)
    try:
        summary = run_loop(runner, bundle.preprocess, bundle.classes.names, grabber, opts,
                           lambda r: [e(r) for e in emitters], stop)
    finally:
        source.release()
        if out:
            out.close()
        if mqtt:
            mqtt.close()
    summary["stopped_by_signal"] = stop.is_set()
    if grabber.error:
        summary["error"] = grabber.error
    print("summary: " + json.dumps(summary), file=sys.stderr)
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=2))
    return 1 if grabber.error else 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("run", "validate", "-h", "--help"):
        argv.insert(0, "run")
    parser = argparse.ArgumentParser(prog="./run.sh", description="EfficientNet int8 on this board")
    sub = parser.add_subparsers(dest="command")
    _run_parser(sub)
    _validate_parser(sub)
    args = parser.parse_args(argv)
    from edge.bundle import Bundle

    try:
        bundle = Bundle.load(args.bundle)
        if args.command == "validate":
            from edge.validate import validate_bundle

            report = validate_bundle(bundle, args)
            return 0 if report["ships"] else 3
        return run(args, bundle)
    except UserError as e:  # missing source, bundle, runtime: one line
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
