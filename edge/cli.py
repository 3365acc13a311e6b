"""The bundle's command line (`./run.sh`): the camera program (`run`, the default) and `validate`.

Only the standard library and edge's standard-library modules are imported up front, the
rest inside the commands, so a Python that lacks numpy, OpenCV or the runtime gets one line
naming what to install (exit 1), not a traceback; `--debug` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from edge.errors import MissingRuntime, UserError
from edge.install import missing_package

BUNDLE_ROOT = Path(__file__).resolve().parent.parent

# Every command with its one line: `./run.sh --help` lists them and the bundle's README (pipeline/ship/bundle.py) too.
COMMANDS = {
    "run": "classify a camera, stream, video file or image folder, one JSON line per frame (the default command)",
    "validate": "accuracy and latency of this bundle's model on a labelled folder, in this board's runtime",
    "latency": "batch-1 latency of this bundle's int8 model in this board's runtime, as one JSON line (no images needed)",
    "capture": "frames from this board's camera (or a stream, video file or image folder) into a folder, for make deploy CALIB=",
    "bench": "a sustained run: the int8 model back to back for N minutes, latency per minute beside temperature, clock and throttling",
}
EPILOG = ("With no command, ./run.sh runs `run`: ./run.sh --source 0 is ./run.sh run --source 0.\n"
          "Each command's options: ./run.sh run --help, ./run.sh validate --help.")


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad option as one line (what is wrong, where the help is), not a usage dump; exit 2 as argparse."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--bundle", default=str(BUNDLE_ROOT), help="bundle folder (default: the one this program is in)")
    common.add_argument("--debug", action="store_true", help="show the traceback of an error instead of its one line")
    return common


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", help="camera index, /dev/videoN, GStreamer pipeline, rtsp/http URL, video file, image folder or image (default: the profile's camera)")
    p.add_argument("--headless", action="store_true", help="no overlay window")
    p.add_argument("--json", metavar="PATH", help="write one JSON line per classified frame here ('-' = stdout, the default when headless)")
    p.add_argument("--topk", type=int, default=3, help="labels per frame (default 3)")
    p.add_argument("--smooth", type=int, default=0, help="average probabilities over about N frames (default off)")
    p.add_argument("--width", type=int, help="camera width")
    p.add_argument("--height", type=int, help="camera height")
    p.add_argument("--fps", type=float, help="camera frame rate (with --realtime: the rate a file is played at)")
    p.add_argument("--realtime", action="store_true", help="play a file/folder at its frame rate like a camera, dropping stale frames")
    p.add_argument("--max-frames", type=int, default=0, help="stop after N classified frames")
    p.add_argument("--threads", type=int, help="runtime threads (default: the bundle's)")
    p.add_argument("--mode", choices=("latency", "throughput"), default="latency",
                   help="latency (default): one frame at a time, the newest; throughput: several in flight on a "
                        "board with cores to spare, decisions still in frame order")
    p.add_argument("--in-flight", type=int, default=0, metavar="N",
                   help="throughput mode: inferences at once (default: OpenVINO's optimal count, else one per core)")
    p.add_argument("--stats-every", type=float, default=5.0, help="seconds between live statistics on stderr (0 = off)")
    p.add_argument("--summary", metavar="PATH", help="also write the exit summary as JSON here")
    p.add_argument("--reconnect", type=int, default=10, help="reconnect attempts when a live source drops (default 10)")
    status = p.add_argument_group("fleet status", "the board's status (release, model, fps, latency, shadow agreement, "
                                  "alerts) every few seconds: to a file, and with --mqtt as a retained message per board")
    status.add_argument("--status", metavar="PATH", help="write the status here (JSON, replaced whole each time)")
    status.add_argument("--status-every", type=float, default=5.0, help="seconds between status updates (default 5)")
    status.add_argument("--board", help="this board's name in the fleet (default: its host name)")
    shadow = p.add_argument_group("shadow check", "the bundle's float model beside int8 on sampled frames, off the critical "
                                  "path: a running agreement with its 95 % interval, and one alert when it falls clearly below deploy's")
    shadow.add_argument("--shadow", type=int, default=0, metavar="N", help="run the float model on one frame in N (default 0: off)")
    shadow.add_argument("--shadow-margin", type=float, help="alert when agreement's upper 95 %% bound is below deploy's "
                        "lower bound minus this (default 0.05: the shift a new camera brings anyway)")
    shadow.add_argument("--shadow-threads", type=int, default=1, help="runtime threads of the float model (default 1: int8 keeps the rest)")
    mqtt = p.add_argument_group("MQTT", "a login comes from the environment, MQTT_USERNAME and MQTT_PASSWORD, or the password "
                                "from --mqtt-password-file: never from the command line, which every user of the board can read")
    mqtt.add_argument("--mqtt", metavar="HOST[:PORT]", help="also publish each classification to this MQTT broker (port 1883, 8883 with TLS)")
    mqtt.add_argument("--mqtt-topic", default="effnet-edge/classification", help="MQTT topic")
    mqtt.add_argument("--mqtt-alert-topic", default="effnet-edge/alert", help="MQTT topic of the shadow check's alert")
    mqtt.add_argument("--mqtt-status-topic", default="effnet-edge/status",
                      help="the board's retained status goes to TOPIC/BOARD (default effnet-edge/status)")
    mqtt.add_argument("--mqtt-password-file", metavar="FILE", help="the MQTT password, the first line of FILE (user name: MQTT_USERNAME)")
    mqtt.add_argument("--mqtt-ca", metavar="FILE", help="TLS: the CA certificate (PEM) that signed the broker's certificate")
    mqtt.add_argument("--mqtt-cert", metavar="FILE", help="TLS: this client's certificate (PEM), for a broker that asks for one")
    mqtt.add_argument("--mqtt-key", metavar="FILE", help="TLS: the private key (PEM) of --mqtt-cert")


def _validate_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="labelled folder, one subfolder per class; or frames without labels "
                   "(make capture's), judged against the bundle's float model and what deploy measured")
    p.add_argument("--out", help="where report.json/report.md go (default: BUNDLE/validation)")
    p.add_argument("--runs", type=int, default=100, help="timed runs for latency (default 100)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs first (default 10)")
    p.add_argument("--max-images", type=int, default=0, help="classify at most N images (default all)")
    p.add_argument("--threads", type=int, help="runtime threads (default: the bundle's)")
    p.add_argument("--strict", action="store_true", help="an inconclusive verdict (too few images) exits 3 too")


def _latency_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", type=int, default=100, help="timed runs (default 100)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs first (default 10)")
    p.add_argument("--threads", type=int, help="runtime threads (default: the bundle's)")


def _bench_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--minutes", type=float, required=True, help="how long to run (e.g. 10)")
    p.add_argument("--window", type=float, default=60.0, help="seconds per row: p50, p99, images/s, sensors (default 60)")
    p.add_argument("--threads", type=int, help="runtime threads (default: the bundle's)")
    p.add_argument("--out", default="sustained", help="writes OUT.json and, with matplotlib, OUT.png (default ./sustained)")


def _capture_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="the folder to make (it must not exist; made whole or not at all)")
    p.add_argument("--count", type=int, required=True, help="frames to keep")
    p.add_argument("--source", help="as the camera program's --source (default: the profile's camera)")
    p.add_argument("--every", type=float, default=1.0, help="live source: at most one frame every SECONDS (default 1)")
    p.add_argument("--stride", type=int, default=0, help="file or folder: keep one frame in N (default: its length / COUNT)")
    p.add_argument("--min-change", type=float, default=3.0,
                   help="skip a frame whose 32x32 grey thumbnail differs from the last kept one by less than this many grey levels (default 3)")
    p.add_argument("--width", type=int, help="camera width")
    p.add_argument("--height", type=int, help="camera height")
    p.add_argument("--fps", type=float, help="camera frame rate")
    p.add_argument("--reconnect", type=int, default=10, help="reconnect attempts when a live source drops (default 10)")


def parser() -> argparse.ArgumentParser:
    width = max(map(len, COMMANDS))
    commands = "\n".join(f"  {name:<{width}}  {line}" for name, line in COMMANDS.items())
    top = _Parser(prog="./run.sh", usage="./run.sh [COMMAND] [options]", epilog=EPILOG,
                  description=f"EfficientNet int8 on this board.\n\ncommands:\n{commands}",
                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", prog="./run.sh", help=argparse.SUPPRESS)  # listed one line each in the description
    for name, line in COMMANDS.items():
        p = sub.add_parser(name, parents=[_common()], help=line, description=line[0].upper() + line[1:] + ".")
        {"run": _run_options, "validate": _validate_options, "latency": _latency_options, "capture": _capture_options,
         "bench": _bench_options}[name](p)
    return top


def run(args) -> int:
    """The camera program. What can fail (broker, source, runtime) is checked before the JSON file is opened."""
    from edge.bundle import Bundle
    from edge.loop import LoopOptions, json_emitter, run_loop
    from edge.sources import Grabber, open_source

    if args.in_flight < 0 or (args.in_flight and args.mode != "throughput"):
        raise UserError(f"--in-flight {args.in_flight}: N inferences at once (0: the runtime's choice), with --mode throughput")
    bundle = Bundle.load(args.bundle)
    mqtt = _publisher(args)  # before the model loads (a TensorRT engine builds for minutes): a refused login shows at once
    camera = bundle.config.get("camera", {})
    source = open_source(args.source or camera.get("source", "0"), args.width or camera.get("width", 0),
                         args.height or camera.get("height", 0), args.fps or 0)
    latest_only = source.live or args.realtime
    pace = (args.fps or source.fps) if (args.realtime and not source.live) else 0
    grabber = Grabber(source, latest_only=latest_only, pace_fps=pace, reconnect_tries=args.reconnect, prepare=bundle.model_input)
    in_flight = bundle.in_flight(args.threads, args.in_flight) if args.mode == "throughput" else None
    runner = bundle.runner("int8", args.threads) if in_flight is None else None
    shadow = _shadow(args, bundle, mqtt)
    out = open(args.json, "a") if args.json and args.json != "-" else None
    emitters = [json_emitter(out or sys.stdout)] if out or args.json == "-" or args.headless else []
    emitters += [mqtt.publish] if mqtt else []
    status = _status(args, bundle, mqtt, shadow, (in_flight or runner).runtime)
    emitters += [status] if status else []
    verified = "" if bundle.config.get("verified", True) else (
        " (unverified: the host's validation images were too few to resolve MAX_DROP; run ./run.sh validate --data DIR)")
    print(f"effnet-edge: {bundle.config['model']} {bundle.config['quant']}{verified} on {(in_flight or runner).runtime}, "
          f"source {args.source or camera.get('source')}", file=sys.stderr)
    if shadow is not None:
        print(shadow.describe(), file=sys.stderr)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    opts = LoopOptions(args.topk, args.smooth, args.headless, args.max_frames, args.stats_every)
    try:
        summary = run_loop(runner, bundle.model_input, bundle.classes.names, grabber, opts,
                           lambda r: [e(r) for e in emitters], stop, shadow=shadow, in_flight=in_flight)
    finally:
        source.release()
        if status:
            status.close()
        for opened in (out, mqtt):
            if opened:
                opened.close()
    summary["stopped_by_signal"] = stop.is_set()
    if grabber.error:
        summary["error"] = grabber.error
    print("summary: " + json.dumps(summary), file=sys.stderr)
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=2))
    return 1 if grabber.error else 0


def _shadow(args, bundle, mqtt):
    """--shadow N: the float model on its own thread, and where its one alert goes (stderr, the MQTT alert topic)."""
    if not args.shadow:
        return None
    if args.shadow < 0:
        raise UserError(f"--shadow {args.shadow}: N is how many frames per shadowed one, 1 or more (0: off)")
    from edge.shadow import DEFAULT_MARGIN, ShadowCheck, ShadowOptions, reference_from

    opts = ShadowOptions(args.shadow, DEFAULT_MARGIN if args.shadow_margin is None else args.shadow_margin,
                         reference_from(bundle.config))
    float_runner = bundle.runner("float", args.shadow_threads)

    def alert(message: str, state: dict) -> None:
        sys.stderr.write(f"warning: shadow check: {message}\n")  # one write: the loop's stats lines come from another thread
        sys.stderr.flush()
        if mqtt:
            mqtt.alert(args.mqtt_alert_topic, {"alert": "int8_fidelity", "message": message, "shadow": state})

    return ShadowCheck(float_runner, opts, alert)


def _status(args, bundle, mqtt, shadow, runtime: str):
    """The board's status for a fleet (edge.status): with --status PATH, or with --mqtt (retained, per board)."""
    if not (args.status or mqtt):
        return None
    from edge.status import StatusReporter

    return StatusReporter(bundle, args.board, args.status, mqtt, args.mqtt_status_topic, args.status_every, shadow, runtime)


def _publisher(args):
    """The MQTT publisher, connected and accepted by the broker; None without --mqtt."""
    if not args.mqtt:
        return None
    from edge.mqtt import MqttPublisher, MqttSettings

    return MqttPublisher(MqttSettings.from_args(args))


def validate(args) -> int:
    from edge.bundle import Bundle
    from edge.validate import validate_bundle

    report = validate_bundle(Bundle.load(args.bundle), args)
    return 0 if report["ships"] else 3


def latency(args) -> int:
    """What `make choose DEVICE=...` reads: the same measurement as the host's (edge.latency), on the board."""
    import platform

    from edge.bundle import Bundle
    from edge.latency import measure

    bundle = Bundle.load(args.bundle)
    runner = bundle.runner("int8", args.threads)
    result = measure(runner.infer, bundle.blank(), args.warmup, args.runs)
    print(json.dumps({**result, "runtime": runner.runtime, "threads": runner.threads,
                      "machine": f"{platform.node()} ({platform.machine()})"}))
    return 0


def bench(args) -> int:
    """The sustained run on this board (edge.sustained): a line per window, then the verdict line."""
    import platform

    from edge import sustained
    from edge.bundle import Bundle

    if not args.minutes > 0 or not args.window > 0:
        raise UserError(f"--minutes {args.minutes} --window {args.window}: both must be positive (e.g. --minutes 10)")
    bundle = Bundle.load(args.bundle)
    runner = bundle.runner("int8", args.threads)
    for line in sustained.absent(sustained.Sensors()):
        print(f"[sustained] {line}", file=sys.stderr)
    print(f"[sustained] {runner.runtime}, {runner.threads} thread(s): {args.minutes:g} min in windows of {args.window:g} s",
          file=sys.stderr)
    result = sustained.run(runner.infer, bundle.blank(), args.minutes, args.window,
                           on_window=lambda row: print(sustained.window_line(row), file=sys.stderr, flush=True))
    result.update(runtime=runner.runtime, threads=runner.threads, machine=f"{platform.node()} ({platform.machine()})")
    written = sustained.write(result, Path(args.out), f"{runner.runtime} on {platform.node()}")
    print(f"[sustained] {result['verdict']}", file=sys.stderr)
    print(json.dumps({"verdict": result["verdict"], **written}))
    return 0


def capture(args) -> int:
    """Frames for calibration; the bundle gives the default camera (`./run.sh capture` works without a model too)."""
    from edge.capture import main as capture_main

    if not args.source:
        config = Path(args.bundle) / "config.json"
        args.source = str(json.loads(config.read_text()).get("camera", {}).get("source", "0")) if config.is_file() else "0"
    return capture_main(args)


def one_line(e: Exception, bundle: Path) -> str | None:
    """The line a user sees for a setup or input mistake; None for a bug, whose traceback is shown."""
    module = e.module if isinstance(e, MissingRuntime) else (e.name if isinstance(e, ModuleNotFoundError) else None)
    line = missing_package(module, bundle / "requirements.txt") if module else None
    return line or (str(e) if isinstance(e, UserError) else None)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = parser()
    if argv and not argv[0].startswith("-") and argv[0] not in COMMANDS:  # run takes no positional: a mistyped command
        top.error(f"unknown command {argv[0]!r}: use {' or '.join(COMMANDS)}")
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv.insert(0, "run")
    args = top.parse_args(argv)
    try:
        return {"run": run, "validate": validate, "latency": latency, "capture": capture, "bench": bench}[args.command](args)
    except Exception as e:
        line = one_line(e, Path(args.bundle))
        if line is None or args.debug:
            raise
        print(f"error: {line}", file=sys.stderr)
        return 1
