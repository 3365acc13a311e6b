"""MQTT publishing against a real mosquitto, and pushing a bundle over a real sshd, both on loopback."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from board import board_venv, free_port, wait_port, write_video
from conftest import CLASSES, make_image
from pipeline import PipelineError
from pipeline import push
from pipeline.cli import main


@pytest.fixture(scope="module")
def deployed(tiny_checkpoint, colour_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("deploy") / "run"
    assert main(["deploy", "--model", "b0", "--weights", str(tiny_checkpoint), "--data", str(colour_data),
                 "--image-size", "64", "--calib-size", "8", "--out", str(out), "--set", "runs=3", "--set", "warmup=1"]) == 0
    return out


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    rng = np.random.default_rng(2)
    return write_video(tmp_path_factory.mktemp("v") / "v.avi", [make_image(CLASSES[i % 4], rng) for i in range(12)])


@pytest.fixture
def mosquitto(tmp_path):
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto; make test installs it as root)")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_mqtt_publishes_every_classification(deployed, video, mosquitto):
    import paho.mqtt.client as mqtt

    received = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_message = lambda c, u, msg: received.append(json.loads(msg.payload))
    sub.connect("127.0.0.1", mosquitto)
    sub.subscribe("robot/vision", qos=0)
    sub.loop_start()
    time.sleep(0.5)
    try:
        env = {**os.environ, "PYTHON": str(board_venv())}
        r = subprocess.run([str(deployed / "bundle" / "run.sh"), "--source", str(video), "--headless", "--json", "/dev/null",
                            "--mqtt", f"127.0.0.1:{mosquitto}", "--mqtt-topic", "robot/vision"],
                           capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        deadline = time.monotonic() + 10
        while len(received) < 12 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert len(received) == 12 and [m["frame"] for m in received] == list(range(12))
    assert {"index", "label", "score", "topk", "latency_ms", "age_ms"} <= set(received[0])


def test_unreachable_broker_is_one_line(deployed, video):
    env = {**os.environ, "PYTHON": str(board_venv())}
    r = subprocess.run([str(deployed / "bundle" / "run.sh"), "--source", str(video), "--headless",
                        "--mqtt", f"127.0.0.1:{free_port()}"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith("error: cannot reach the MQTT broker")


@pytest.fixture
def sshd(tmp_path):
    binary = "/usr/sbin/sshd"
    if not Path(binary).exists() or not shutil.which("ssh-keygen"):
        pytest.skip("openssh-server is not installed (apt-get install openssh-server; make test installs it as root)")
    if os.geteuid() != 0:
        pytest.skip("the loopback sshd test runs as root (as CI does)")
    d = tmp_path / "ssh"
    d.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "host_key")], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "client_key")], check=True)
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    port = free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nAuthorizedKeysFile {d / 'authorized_keys'}\n"
        f"PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
        f"UsePAM no\nStrictModes no\nPidFile {d / 'sshd.pid'}\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    proc = subprocess.Popen([binary, "-D", "-e", "-f", str(d / "sshd_config")], stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
        yield push.Device(f"{user}@127.0.0.1", port, str(d / "client_key"), str(tmp_path / "board" / "effnet-edge"),
                          str(d / "known_hosts"))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_push_copies_installs_and_starts(deployed, video, sshd, capfd):
    """The board's Python is a venv made on the board from the bundle's own requirements, never the system one."""
    push.copy(deployed / "bundle", sshd)
    board = Path(sshd.dest)
    assert (board / "run.sh").is_file() and (board / "config.json").read_text() == (deployed / "bundle" / "config.json").read_text()
    push.install(sshd)
    venv_python = board / ".venv" / "bin" / "python"
    r = subprocess.run([str(venv_python), "-c", "import cv2, openvino; import importlib.util as u; print(u.find_spec('torch'))"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "None", r.stderr
    push.copy(deployed / "bundle", sshd)  # a second push updates in place and keeps the board's venv
    assert venv_python.exists()
    rc = push.start(sshd, "foreground", str(video), ["--json", str(board / "out.jsonl")])
    assert rc == 0
    lines = (board / "out.jsonl").read_text().splitlines()
    assert len(lines) == 12 and json.loads(lines[0])["frame"] == 0
    assert "summary:" in capfd.readouterr().err


def test_deploy_with_device_pushes_through_the_cli(deployed, tiny_checkpoint, colour_data, sshd):
    args = ["deploy", "--model", "b0", "--weights", str(tiny_checkpoint), "--data", str(colour_data),
            "--image-size", "64", "--calib-size", "8", "--out", str(deployed), "--set", "runs=3", "--set", "warmup=1",
            "--device", sshd.address, "--ssh-port", str(sshd.port), "--ssh-key", sshd.key,
            "--ssh-known-hosts", sshd.known_hosts, "--device-dir", sshd.dest]
    assert main(args) == 0
    assert (Path(sshd.dest) / "config.json").read_text() == (deployed / "bundle" / "config.json").read_text()


def test_push_never_asks_for_a_password(deployed, sshd, tmp_path):
    stranger = push.Device(sshd.address, sshd.port, None, sshd.dest, sshd.known_hosts)  # no key: must fail, not prompt
    with pytest.raises(PipelineError, match="check DEVICE, the ssh key"):
        push.copy(deployed / "bundle", stranger)


def test_user_strings_never_reach_a_shell(deployed, video, sshd, tmp_path):
    marker = tmp_path / "pwned"
    push.copy(deployed / "bundle", sshd)
    # A source with shell syntax in it is one argument on the board, not a command.
    rc = push.start(sshd, "foreground", f"{video}; touch {marker}")
    assert rc != 0 and not marker.exists()
