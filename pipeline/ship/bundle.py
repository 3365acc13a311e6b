"""The deploy bundle: what is copied to the board. Model artifacts, labels, a config, the device code.

The device code is the `edge` package as it is (numpy, OpenCV and the target runtime only),
so the camera loop and `run.sh validate` on the board are the code the host tested.
"""
from __future__ import annotations

import json
import platform
import shutil
import tarfile
import time
from pathlib import Path

from edge.bundle import BUNDLE_FORMAT
from edge.cli import COMMANDS
from edge.files import copy_artifact
from edge.report import agreement_phrase
from pipeline.data.folders import class_table

EDGE_DIR = Path(__file__).resolve().parents[2] / "edge"
SERVICE = "effnet-edge.service"

RUN_SH = """#!/bin/sh
# The camera program:  ./run.sh --source 0 [--headless] [--json out.jsonl] [--topk 3]   (./run.sh --help: every command)
# Accuracy on this board:  ./run.sh validate --data path/to/labelled/images
# Python: $PYTHON, else the bundle's own .venv (made by `make push DEVICE_INSTALL=1`), else python3.
cd "$(dirname "$0")" || exit 1
[ -z "$PYTHON" ] && [ -x .venv/bin/python ] && PYTHON=.venv/bin/python
exec "${PYTHON:-python3}" -m edge "$@"
"""

INSTALL_SERVICE_SH = """#!/bin/sh
# Install and start the camera program as a systemd service (starts on boot, restarts on failure).
set -e
here="$(cd "$(dirname "$0")" && pwd)"
sed -e "s|@BUNDLE@|$here|g" -e "s|@USER@|$(id -un)|g" "$here/effnet-edge.service" | sudo tee /etc/systemd/system/effnet-edge.service >/dev/null
sudo systemctl daemon-reload
sudo systemctl enable --now effnet-edge.service
echo "started; logs: journalctl -u effnet-edge -f"
"""


def _copy_artifact(src: Path, dest_dir: Path, stem: str) -> str:
    """Copy an artifact and its sidecars under a new stem; the path relative to the bundle."""
    return f"model/{copy_artifact(src, dest_dir / stem).name}"


def write_bundle(dest: Path, cfg, spec, target, preprocess, labels: list[str], report: dict, int8: Path, float_: Path,
                 takes_pixels: bool) -> None:
    """Lay the bundle out in `dest` (a fresh folder). `takes_pixels`: the artifacts take the camera's uint8 BGR pixels
    and normalise them themselves (the board only crops and resizes); else NCHW float tensors."""
    (dest / "model").mkdir(parents=True)
    shutil.copytree(EDGE_DIR, dest / "edge", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    config = {
        "format": BUNDLE_FORMAT,
        "model": spec.name,
        "target": cfg.target,
        "runtime": target.device_runtime,
        "quant": report["quant"],
        "artifact": _copy_artifact(int8, dest / "model", "int8"),
        "float_artifact": _copy_artifact(float_, dest / "model", "float"),
        "precision": cfg.precision,
        "threads": cfg.threads,
        "preprocess": preprocess.to_dict(),
        "input": "pixels" if takes_pixels else "tensor",
        "classes": "labels.json",
        "camera": {"source": cfg.camera.source, "width": cfg.camera.width, "height": cfg.camera.height, "fps": cfg.camera.fps},
        "thresholds": {"max_drop": cfg.max_drop},
        # "unverified": the host's images were too few to resolve MAX_DROP (an inconclusive verdict).
        "verdict": report["verdict"],
        "int8_isa": report["int8_isa"]["made_for"],
        "verified": report["verdict"] == "passed",
        "host": {
            "accuracy": report["accuracy"],
            "fidelity": report["fidelity"],
            "latency_ms": report["latency_ms"],
            "throughput_fps": report["throughput_fps"],
            "runtime": report["runtime"]["int8"],
            "data": report["data"]["folder"],
            "calibration": report["calibration"],
            "field_agreement": report.get("field_agreement"),  # held-out captured frames: the shadow check's reference
            "machine": f"{platform.node()} ({platform.processor() or platform.machine()})",
            "date": time.strftime("%Y-%m-%d"),
        },
    }
    (dest / "config.json").write_text(json.dumps(config, indent=2))
    (dest / "labels.json").write_text(json.dumps(class_table(labels).to_dict()))
    (dest / "labels.txt").write_text("\n".join(labels) + "\n")
    for name, text in (("run.sh", RUN_SH), ("install-service.sh", INSTALL_SERVICE_SH)):
        (dest / name).write_text(text)
        (dest / name).chmod(0o755)
    (dest / SERVICE).write_text(_service(spec.name, cfg.target))
    (dest / "requirements.txt").write_text(_requirements(target))
    (dest / "README.md").write_text(_readme(config, target))


def _requirements(target) -> str:
    lines = ["# The board needs only these: no PyTorch, no NNCF.", *target.board_requirements(),
             "# optional, for --mqtt:", "# paho-mqtt>=2.0"]
    return "\n".join(lines) + "\n"


def _service(model: str, target: str) -> str:
    return f"""[Unit]
Description=effnet-edge camera classifier ({model}, {target} int8)
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User=@USER@
WorkingDirectory=@BUNDLE@
ExecStart=@BUNDLE@/run.sh --headless --json @BUNDLE@/classifications.jsonl --stats-every 60
Restart=on-failure
RestartSec=3

[Install]
WantedBy=multi-user.target
"""


def _readme(config: dict, target) -> str:
    host = config["host"]
    acc = host["accuracy"]
    install = target.device_install
    commands = "\n".join(f"- `./run.sh {name}`: {line}." for name, line in COMMANDS.items())
    return f"""# {config['model']} → {config['target']} ({config['quant']})

Runs without PyTorch: numpy, OpenCV and {config['runtime']} only.

1. Install: {install}
2. Run the camera program: `./run.sh --source 0 --headless --json out.jsonl --topk 3`
   (sources: a camera index, `/dev/videoN`, a GStreamer pipeline, an `rtsp://` URL, a video file, a folder of images or one
   image, whose JSON lines then name the `file`; `--width/--height/--fps` for the camera, `--smooth N`, `--mqtt host:1883`).
   Default source from the profile: `{config['camera']['source']}`
   An MQTT broker with a login: the user name and password in the environment (`MQTT_USERNAME`, `MQTT_PASSWORD`) or the
   password in a file (`--mqtt-password-file FILE`), never on the command line; TLS: `--mqtt-ca ca.crt`
   (and `--mqtt-cert`/`--mqtt-key` where the broker asks for a client certificate).
   Watch int8 in the field: `--shadow 10` runs the float model on one frame in 10 on a second thread and reports the
   running int8-vs-float agreement (JSON lines, MQTT, statistics, summary), with one alert (stderr, `--mqtt-alert-topic`)
   when it falls clearly below what deploy measured.
3. Check accuracy on this board: `./run.sh validate --data path/to/labelled/images` (writes `validation/report.md`).
   Frames for calibration: `./run.sh capture --out frames --count 300` (or `make capture DEVICE=...` on the host).
4. Start on boot: `./install-service.sh` (systemd; logs with `journalctl -u effnet-edge -f`).

A setup mistake (a missing package, camera, file or broker login) is one line naming the fix, exit 1; `--debug` shows
the traceback instead.

Measured on the host ({host['machine']}, {host['runtime']}, {host['date']}) on `{host['data']}`:
int8 top-1 {acc['int8']['top1']:.3f} vs float {acc['float']['top1']:.3f} ({acc['images']} images),
{agreement_phrase(host['fidelity'])}; latency p50 {host['latency_ms']['p50']:.2f} ms.
Verdict: **{config['verdict']}**{'' if config['verified'] else ' (unverified: ' + host['fidelity']['reason'] + ')'}.

## Commands

`./run.sh --help` lists them, `./run.sh COMMAND --help` gives each one's options:

{commands}
"""


def write_tarball(bundle_dir: Path, tar_path: Path) -> None:
    tmp = tar_path.with_name(f".{tar_path.name}.tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(bundle_dir, arcname="bundle")
    tmp.replace(tar_path)
