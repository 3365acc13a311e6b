"""`python -m pipeline`: the same library functions the Makefile calls."""
from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import re
import sys
import traceback
import typing
from pathlib import Path

from pipeline.config import MODES, OPTIMIZERS, TrainConfig
from pipeline.fleet.config import FleetConfig, RolloutConfig
from targets import TARGETS

from pipeline.stages import STAGES

EXIT_ERROR, EXIT_GATE = 1, 3



class _Parser(argparse.ArgumentParser):
    """argparse, with a bad option as one line (what is wrong and the valid choices), not a usage dump."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


# --help text for TrainConfig's fields; the options themselves (names, types, defaults) come from the dataclass.
TRAIN_HELP = {
    "data": "labelled folder, one subfolder per class",
    "val": "validation folder (default: hold out val_split of DATA, stratified)",
    "optimizer": f"one of {', '.join(OPTIMIZERS)}",
    "freeze_backbone": "train only the new head",
    "weights": "start from this file; 'random' trains from scratch (default: pretrained)",
    "out": "run folder (default runs/<model>-train)",
    "resume": "continue from the run folder's last.pt",
}


def _config_options(parser, config_class, helps: dict, required: tuple[str, ...] = (), skip: tuple[str, ...] = ()) -> None:
    """One --option per field of a frozen config dataclass, its type and default read from the dataclass, so the CLI
    never retypes the config (a bool field is a flag; an optional one takes its type or nothing)."""
    defaults, hints = config_class(**{name: "x" for name in required}), typing.get_type_hints(config_class)
    for f in dataclasses.fields(config_class):
        if f.name in skip:
            continue
        flag, kind = "--" + f.name.replace("_", "-"), hints[f.name]
        base = next((a for a in typing.get_args(kind) if a is not type(None)), kind)
        if base is bool:
            parser.add_argument(flag, action="store_true", help=helps.get(f.name))
        elif f.name in required:
            parser.add_argument(flag, type=base, required=True, help=helps.get(f.name))
        else:
            text = " ".join(filter(None, [helps.get(f.name), "(default: %(default)s)"]))
            parser.add_argument(flag, type=base, default=getattr(defaults, f.name), help=text)


def _deploy_options(p: argparse.ArgumentParser) -> None:
    # no argparse choices: targets.get_target's own one-line error names the valid ones, exit 1 like every bad input
    p.add_argument("--target", default="openvino", help=f"deployment target: {', '.join(sorted(TARGETS))}")
    p.add_argument("--model", default="lite0", help="b0..b7, lite0..lite4 or phi<φ> (see `python -m pipeline models`)")
    p.add_argument("--data", help="labelled image folder, one subfolder per class (default: a tiny embedded sample)")
    p.add_argument("--calib", help="calibration image folder (default: DATA); 'random' only if you mean it")
    p.add_argument("--calib-size", type=int, help="calibration images (default 300)")
    p.add_argument("--weights", help="state_dict/checkpoint file; 'random' for an untrained model (default: pretrained)")
    p.add_argument("--num-classes", type=int, help="classes for WEIGHTS=random")
    p.add_argument("--image-size", type=int, help="input resolution (default: the model's own)")
    p.add_argument("--max-drop", type=float, help="allowed int8 top-1 drop in points (default 1.0)")
    p.add_argument("--strict", action="store_true", default=None,
                   help="an inconclusive verdict (too few images to resolve MAX_DROP) fails too, exit 3")
    p.add_argument("--quant", choices=MODES,
                   help="ptq (default): post-training; qat: quantization-aware training; auto: accuracy-aware PTQ")
    p.add_argument("--train-data", help="labelled folder QAT trains on (default: DATA)")
    p.add_argument("--out", help="run folder (default runs/<model>-<target>-<quant>)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any config field, e.g. quant.preset=performance")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def _ssh_options(p: argparse.ArgumentParser, purpose: str, device_help: str, folder: str):
    """The board and how to reach it (push.Device's fields, read back by _device), in a group of their own."""
    g = p.add_argument_group(f"{purpose} over ssh (keys only)")
    g.add_argument("--device", metavar="USER@HOST", help=device_help)
    g.add_argument("--device-dir", default=folder, help=f"folder on the board (default ~/{folder})")
    g.add_argument("--ssh-port", type=int, default=22)
    g.add_argument("--ssh-key", help="identity file (default: ssh's own)")
    g.add_argument("--ssh-known-hosts", help="known_hosts file (default: ssh's own)")
    g.add_argument("--device-install", action="store_true", help="pip-install the bundle's requirements on the board first")
    return g


def _device(args):
    from pipeline.ship import push

    return push.Device(args.device, args.ssh_port, args.ssh_key, args.device_dir, args.ssh_known_hosts) if args.device else None


def _device_options(p: argparse.ArgumentParser) -> None:
    g = _ssh_options(p, "pushing to a board", "copy the bundle to this board", "effnet-edge")
    g.add_argument("--device-start", choices=["foreground", "service"], help="start the camera program after copying")
    g.add_argument("--source", help="camera source for --device-start foreground")


def _push(args, cfg) -> int:
    from pipeline.ship import push

    bundle = cfg.run_dir / "bundle"
    device = _device(args)
    push.copy(bundle, device)
    if args.device_install:
        push.install(device)
    if args.device_start:
        return push.start(device, args.device_start, args.source)
    return 0


def _run_camera(args, cfg, extra: list[str]) -> int:
    import subprocess

    from pipeline import PipelineError

    run_sh = cfg.run_dir / "bundle" / "run.sh"
    if not run_sh.exists():
        raise PipelineError(f"no bundle at {run_sh.parent}; run make deploy TARGET={cfg.target} MODEL={cfg.model} first")
    # The host's own Python has OpenCV and the runtimes; a board uses its bundle's .venv or python3.
    env = {**os.environ, "PYTHON": os.environ.get("PYTHON") or sys.executable}
    return subprocess.run([str(run_sh), *(["--source", args.source] if args.source else []), *extra], env=env).returncode


def _config(args):
    from pipeline import PipelineError
    from pipeline.config import make_config

    values = {
        "model": args.model,
        "data": args.data,
        "calib": args.calib,
        "calib_size": args.calib_size,
        "weights": args.weights,
        "num_classes": args.num_classes,
        "image_size": args.image_size,
        "max_drop": args.max_drop,
        "strict": args.strict,
        "train_data": args.train_data,
        "out": args.out,
    }
    if args.quant:
        values["quant.mode"] = args.quant
    for item in args.set:
        key, eq, value = item.partition("=")
        if not eq:
            raise PipelineError(f"--set takes KEY=VALUE, got {item!r}")
        values[key] = value
    return make_config(args.target, values)


def _print_models() -> int:
    """The table, with parameters and MACs counted from each model at its input size (FlopCounterMode, FLOPs / 2)
    beside the paper's FLOPs at the paper's resolution; then a few compound-scaled phi<φ> rows."""
    from pipeline.model.costs import cost
    from pipeline.model.family import FAMILY, PHI_EXAMPLES, phi_spec

    print(f"{'name':7} {'input':>5} {'resize':>6} {'params M':>8} {'MACs G':>7} {'paper GFLOPs':>13} {'top-1':>5} "
          f"{'padding':9} weights")
    for s in [*FAMILY.values(), *map(phi_spec, PHI_EXAMPLES)]:
        p, c = s.preprocess, cost(s)
        top1 = f"{100 * s.weights.top1:.1f}" if s.weights.top1 else "-"
        paper = f"{s.published_gflops:.2f} @{s.published_size}" if s.published_gflops else "-"
        print(f"{s.name:7} {p.image_size:>5} {p.resize_size:>6} {c.params / 1e6:>8.2f} {c.gmacs:>7.3f} {paper:>13} "
              f"{top1:>5} {s.padding:9} {s.weights.source}: {s.weights.ref}")
    print("MACs G: counted at the input size; paper GFLOPs: as published, at the paper's resolution. "
          "phi<φ>: B0 compound-scaled (any φ from -4 to 8), to be trained (README: Compound scaling)")
    return 0


def _print_targets() -> int:
    import targets

    for name in sorted(targets.TARGETS):
        t = targets.get_target(name)
        board = [line.split("#")[0].strip() for line in t.device_requires if not line.startswith("#")]
        ok, missing = t.is_available()
        print(f"{name:10} host: {', '.join(t.requires)}{'' if ok else ' (' + missing + ')'}; board: {', '.join(board)}")
    return 0


def version() -> str:
    """The installed package's version; in a source tree never pip-installed, pyproject.toml's."""
    from importlib import metadata

    try:
        return metadata.version("effnet-edge")
    except metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        found = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.M) if pyproject.is_file() else None
        return found.group(1) if found else "unknown"


def _choose_options(c: argparse.ArgumentParser) -> None:
    c.add_argument("--target", default="openvino", help=f"deployment target: {', '.join(sorted(TARGETS))}")
    c.add_argument("--budget-ms", help="the p99 latency the model must fit, batch 1, in milliseconds (required)")
    c.add_argument("--models", help="comma-separated candidates (default: the whole family table)")
    c.add_argument("--data", help="labelled ImageNet-class folder: measured int8 top-1 instead of the published one")
    c.add_argument("--image-size", type=int, help="run every candidate at this resolution (default: each model's own)")
    c.add_argument("--calib-size", type=int, help="calibration images per candidate (default: deploy's)")
    c.add_argument("--runs", type=int, help="timed runs per candidate (default: the target profile's)")
    c.add_argument("--warmup", type=int, help="untimed runs first (default: the target profile's)")
    c.add_argument("--out", help="choose folder (default runs/choose-<target>)")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a deploy setting for every candidate")
    _ssh_options(c, "timing on a board", "time each candidate's bundle on this board", "effnet-edge-choose")
    c.add_argument("--debug", action="store_true", help="show tracebacks")


def _capture_options(c: argparse.ArgumentParser) -> None:
    c.add_argument("--count", type=int, required=True, help="frames to capture (300 calibrate and leave 1 in 4 to validate on)")
    c.add_argument("--source", help="camera, stream, video file or image folder, as ./run.sh --source (default: the bundle's camera)")
    c.add_argument("--out", help="the folder to make here (default runs/capture-<date>-<time>)")
    c.add_argument("--every", type=float, default=1.0, help="live source: at most one frame every SECONDS (default 1)")
    c.add_argument("--stride", type=int, default=0, help="file or folder: one frame in N (default: its length / COUNT)")
    c.add_argument("--min-change", type=float, default=3.0, help="near-duplicate threshold in grey levels (default 3)")
    _ssh_options(c, "capturing on a board", "capture with this board's camera (its bundle pushed there)", "effnet-edge")
    c.add_argument("--debug", action="store_true", help="show tracebacks")


def _parser(prog: str = "python -m pipeline") -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description="EfficientNet -> int8 edge deployment")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("deploy", help=f"all stages: {', '.join(STAGES)} (and the bundle)")
    _deploy_options(d)
    _device_options(d)
    p = sub.add_parser("push", help="copy a deployed bundle to a board over ssh (and install/start it)")
    _deploy_options(p)
    _device_options(p)
    r = sub.add_parser("run", help="run a deployed bundle's camera program here (options after -- go to ./run.sh)")
    _deploy_options(r)
    r.add_argument("--source", help="camera index, /dev/videoN, GStreamer pipeline, URL, video file or image folder")
    for stage, entry in STAGES.items():
        _deploy_options(sub.add_parser(stage, help=f"run up to this stage: {entry.help}"))
    b = sub.add_parser("bench", help="benchmark every installed runtime side by side (bench/README.md)")
    b.add_argument("--models", default="lite0,b0,b1", help="comma-separated (default lite0,b0,b1)")
    b.add_argument("--data", help="labelled folder for the accuracy table (default: the embedded sample)")
    b.add_argument("--out", default="bench")
    b.add_argument("--quick", action="store_true", help="a few-minute run: fewer runs, smaller scaling budget")
    b.add_argument("--threads", type=int, default=0)
    b.add_argument("--sustained", type=float, metavar="MINUTES",
                   help="instead: the first model's int8 back to back for MINUTES, latency per minute beside temperature and clock")
    b.add_argument("--window", type=float, default=60.0, help="--sustained: seconds per row (default 60)")
    b.add_argument("--debug", action="store_true")
    w = sub.add_parser("weights", help="a B model's ImageNet weights from the hub, or FROM a file downloaded elsewhere, "
                                        "checked against the published hash and put where the loader looks")
    w.add_argument("--model", required=True)
    w.add_argument("--from", dest="source", help="the downloaded .pth file (default: download it)")
    w.add_argument("--debug", action="store_true")
    ro = sub.add_parser("rollout", help="the deployed bundle to every board of an Ansible inventory: canary first, "
                        "proven on each board (gate, p99) before it switches, undone on failure")
    _deploy_options(ro)
    _fleet_options(ro)
    _config_options(ro, RolloutConfig, ROLLOUT_HELP, skip=("data", "strict"))  # DATA and STRICT: the deploy's options
    rb = sub.add_parser("rollback", help="every board of an inventory back to its previous release")
    _fleet_options(rb)
    rb.add_argument("--debug", action="store_true")
    fs = sub.add_parser("fleet-status", help="one table for the fleet: release, proof, speed and field agreement per board")
    _fleet_options(fs)
    fs.add_argument("--debug", action="store_true")
    fs.add_argument("--mqtt", metavar="HOST[:PORT]", help="the broker the boards publish their retained status to")
    fs.add_argument("--mqtt-status-topic", default="effnet-edge/status", help="the boards' status topic prefix")
    fs.add_argument("--wait", type=float, default=3.0, help="seconds to collect the retained status messages (default 3)")
    _choose_options(sub.add_parser("choose", help="the most accurate EfficientNet whose int8 p99 latency fits a budget on the target"))
    _capture_options(sub.add_parser("capture", help="frames from the board's camera (DEVICE) or a source here, for deploy --calib"))
    t = sub.add_parser("train", help="fine-tune on a labelled folder (new head); best.pt feeds make deploy WEIGHTS=")
    _config_options(t, TrainConfig, TRAIN_HELP, required=("data",))
    t.add_argument("--debug", action="store_true")
    f = sub.add_parser("fashion-mnist", help="write a Fashion-MNIST subset (Debian's dataset-fashion-mnist) as train/ and val/ folders")
    f.add_argument("--out", default="data/fashion-mnist")
    f.add_argument("--train-per-class", type=int, default=100)
    f.add_argument("--val-per-class", type=int, default=30)
    f.add_argument("--debug", action="store_true")
    sub.add_parser("models", help="list the EfficientNet family")
    sub.add_parser("targets", help="list the deployment targets")
    sub.add_parser("toolchain", help="build NNCF's C++ extension now (make setup does), or say what is missing")
    return parser


ROLLOUT_HELP = {
    "canary": "boards (or a share: 10%%) that go first, alone",
    "batch": "then the rest, this many (or this share) at a time",
    "budget_ms": "p99 on each board must fit this many ms (0: not checked)",
    "board_data": "a folder already on every board for its gate, instead of --data copied there: labelled, or the frames "
                  "make capture took on it (judged against the bundle's float model)",
    "keep": "releases each board keeps",
    "latency_runs": "timed runs of the latency check on each board",
}


def _fleet_options(p: argparse.ArgumentParser) -> None:
    """The fleet (FleetConfig's fields): an Ansible inventory and how to go over it."""
    _config_options(p, FleetConfig, {"fleet": "an Ansible inventory of the boards (README: 'A fleet of boards')",
                                     "state": "where the records go (default runs/fleet/<inventory name>)",
                                     "limit": "only these boards: an inventory group or pattern",
                                     "forks": "boards worked on at once", "board_dir": "the boards' folder, from the login's home",
                                     "health_s": "seconds the camera program has to come back classifying"}, required=("fleet",))


def _fleet(args) -> FleetConfig:
    return FleetConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(FleetConfig)})


def _rollout(args, cfg) -> int:
    from pipeline.fleet.rollout import rollout

    rc = RolloutConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(RolloutConfig) if f.name not in ("data", "strict")},
                       data=args.data or "", strict=bool(args.strict))
    rollout(_fleet(args), rc, cfg.run_dir)
    return 0


def _rollback(args) -> int:
    from pipeline.fleet.rollout import rollback

    rollback(_fleet(args))
    return 0


def _fleet_status(args) -> int:
    from pipeline.fleet.status import fleet_status

    result = fleet_status(_fleet(args), args.mqtt, args.mqtt_status_topic, args.wait)
    return 0 if not result["flagged"] else EXIT_GATE


def _toolchain(args) -> int:
    from pipeline.quant.qat import check_toolchain

    check_toolchain()
    print("NNCF's C++ extension is built and loads")
    return 0


def _bench(args) -> int:
    from pipeline.bench import BenchConfig, run_bench, valid_models

    models = valid_models([m for m in args.models.split(",") if m])
    bc = BenchConfig(models=models, data=args.data, out=args.out, quick=args.quick, threads=args.threads)
    if args.sustained is not None:
        from pipeline import PipelineError
        from pipeline.bench.sustained import run_sustained

        if not args.sustained > 0 or not args.window > 0:
            raise PipelineError(f"SUSTAINED={args.sustained:g} minutes, window {args.window:g} s: both must be positive, e.g. SUSTAINED=10")
        run_sustained(bc, args.sustained, args.window)
        return 0
    run_bench(bc)
    return 0


def _choose(args) -> int:
    from pipeline.choose.run import ChooseConfig, choose, parse_budget, parse_models

    choose(ChooseConfig(target=args.target, budget_ms=parse_budget(args.budget_ms), models=parse_models(args.models),
                        data=args.data, image_size=args.image_size, calib_size=args.calib_size, warmup=args.warmup,
                        runs=args.runs, settings=tuple(args.set), device=_device(args), device_install=args.device_install, out=args.out))
    return 0


def _capture(args) -> int:
    from edge.capture import CaptureOptions
    from pipeline.ship.capture import CaptureConfig, capture

    options, device = CaptureOptions(args.count, args.every, args.stride, args.min_change), _device(args)
    if device and args.device_install:
        from pipeline.ship import push

        push.install(device)
    capture(CaptureConfig(options, args.source, args.out, device))
    return 0


def _fashion_mnist(args) -> int:
    from pipeline.data.fashion_mnist import export_folders

    info = export_folders(args.out, args.train_per_class, args.val_per_class)
    print(f"{info['train_images']} images in {info['train']}, {info['val_images']} in {info['val']}")
    return 0


def _train(args) -> int:
    from pipeline.train.command import train

    train(TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}))
    return 0


def _stages(args, extra: list[str]) -> int:
    """deploy, push, run and the single stages: the commands that read a deploy config."""
    from pipeline import PipelineError
    from pipeline.chain import run_until

    cfg = _config(args)
    if args.command == "push":
        if not args.device:
            raise PipelineError("push needs --device USER@HOST (make deploy ... DEVICE=user@host)")
        return _push(args, cfg)
    if args.command == "run":
        return _run_camera(args, cfg, extra)
    if args.command == "rollout":
        return _rollout(args, cfg)
    stage = "report" if args.command == "deploy" else args.command
    result = run_until(cfg, stage)
    if result is None:  # a torchrun rank other than 0: it trained beside rank 0, which reports
        return 0
    if stage == "report" and not result["ships"]:
        return EXIT_GATE
    if args.command == "deploy" and args.device:
        return _push(args, cfg)
    return 0


def _weights(args) -> int:
    from pipeline.model import weights
    from pipeline.model.family import get_spec

    spec = get_spec(args.model)
    if weights.hub_file(spec) is None:
        print(f"{spec.name}: its weights need no download ({spec.weights.source}: {spec.weights.ref or 'none'})")
        return 0
    path = weights.install(spec, Path(args.source)) if args.source else weights.ensure(spec)
    print(f"{spec.name}: ImageNet weights checked and in place at {path}")
    return 0


COMMANDS = {"models": lambda args: _print_models(), "targets": lambda args: _print_targets(), "toolchain": _toolchain,
            "bench": _bench, "choose": _choose, "capture": _capture, "fashion-mnist": _fashion_mnist, "train": _train,
            "weights": _weights, "rollback": _rollback, "fleet-status": _fleet_status}


def script(argv=None) -> int:
    """The `effnet-edge` console script (pyproject's [project.scripts]): `python -m pipeline` under its own name."""
    return main(argv, prog="effnet-edge")


def main(argv=None, prog: str = "python -m pipeline") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # OpenVINO's and NNCF's telemetry send each event from a multiprocessing child. Forked from this process, which
    # runs oneDNN, OpenMP and (for TFLite's converter) JAX threads, that child can deadlock on a lock some thread held
    # at the fork (Python's own RuntimeWarning said so on TARGET=rpi): children start from a fresh interpreter instead.
    multiprocessing.set_start_method("spawn", force=True)
    extra: list[str] = []
    if "--" in argv:  # what follows goes to the bundle's ./run.sh (the `run` command)
        argv, extra = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    args = _parser(prog).parse_args(argv)

    from pipeline import PipelineError

    try:
        return COMMANDS[args.command](args) if args.command in COMMANDS else _stages(args, extra)
    except PipelineError as e:  # every user-facing error: missing input, unknown name, missing runtime
        if getattr(args, "debug", False):
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted; finished stages are kept in the run folder", file=sys.stderr)
        return 130
