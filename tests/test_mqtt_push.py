"""MQTT publishing against a real mosquitto, and pushing a bundle over a real sshd, both on loopback."""
from __future__ import annotations

import getpass
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from board import board_venv, free_port, wait_port, write_video
from conftest import CLASSES, deploy_args, make_image, write_folder
from pipeline import PipelineError
from pipeline.ship import push
from pipeline.cli import main


@pytest.fixture(scope="module")
def deployed(deployed_tiny):
    return deployed_tiny("openvino")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    rng = np.random.default_rng(2)
    return write_video(tmp_path_factory.mktemp("v") / "v.avi", [make_image(CLASSES[i % 4], rng) for i in range(12)])


@pytest.fixture
def broker(tmp_path):
    """Starts real mosquitto brokers on loopback: broker(config lines) -> port."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto; make test installs it as root)")
    procs = []

    def start(*lines: str) -> int:
        port = free_port()
        conf = tmp_path / f"mosquitto-{port}.conf"
        # As root, mosquitto would drop to its own user, which cannot read the test's key and password files.
        conf.write_text("\n".join([f"user {getpass.getuser()}", f"listener {port} 127.0.0.1", *lines]) + "\n")
        procs.append(subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(port)
        return port

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def mosquitto(broker):
    return broker("allow_anonymous true")


def subscribe(port: int, topic: str, received: list, login=None, tls=None):
    """A subscriber in this process, collecting the JSON payloads."""
    import paho.mqtt.client as mqtt

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    if login:
        sub.username_pw_set(*login)
    if tls:
        sub.tls_set(**tls)
    sub.on_message = lambda c, u, msg: received.append(json.loads(msg.payload))
    sub.connect("127.0.0.1", port)
    sub.subscribe(topic, qos=0)
    sub.loop_start()
    time.sleep(0.5)
    return sub


def camera(deployed, source, *args, env=None) -> subprocess.CompletedProcess:
    """The bundle's camera program in the board venv (the MQTT password never in these arguments)."""
    env = {**os.environ, **(env or {}), "PYTHON": str(board_venv())}
    return subprocess.run([str(deployed / "bundle" / "run.sh"), "--source", str(source), "--headless", "--json", "/dev/null",
                           "--stats-every", "0", *args], capture_output=True, text=True, env=env, timeout=120)


def wait_for(received: list, n: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while len(received) < n and time.monotonic() < deadline:
        time.sleep(0.1)


def one_line(r: subprocess.CompletedProcess) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    return lines[0]


def test_mqtt_publishes_every_classification(deployed, video, mosquitto):
    received = []
    sub = subscribe(mosquitto, "robot/vision", received)
    try:
        r = camera(deployed, video, "--mqtt", f"127.0.0.1:{mosquitto}", "--mqtt-topic", "robot/vision")
        assert r.returncode == 0, r.stderr
        wait_for(received, 12)
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert len(received) == 12 and [m["frame"] for m in received] == list(range(12))
    assert {"index", "label", "score", "topk", "latency_ms", "age_ms"} <= set(received[0]) and "file" not in received[0]


def test_the_board_status_is_a_file_and_a_retained_message_a_later_subscriber_still_gets(deployed, video, mosquitto, tmp_path):
    """--status and --mqtt: the fleet's view of a board (make fleet-status). The status arrives after the camera
    program has ended, because the broker retains each board's last one."""
    status_file = tmp_path / "status.json"
    r = camera(deployed, video, "--mqtt", f"127.0.0.1:{mosquitto}", "--status", str(status_file), "--board", "drone-7",
               "--status-every", "0.2", "--shadow", "2")
    assert r.returncode == 0, r.stderr
    status = json.loads(status_file.read_text())
    config = json.loads((deployed / "bundle" / "config.json").read_text())
    assert status["board"] == "drone-7" and status["state"] == "stopped" and status["frames"] == 12
    assert status["release"] == "unreleased" and status["model"] == config["model"] and status["isa"]
    assert status["frame_latency_ms"]["p99"] >= status["frame_latency_ms"]["p50"] > 0 and status["frame_latency_ms"]["frames"] == 12
    assert status["shadow"]["frames"] >= 1 and status["verified_at_deploy"] == config.get("verified", True)
    received = []
    sub = subscribe(mosquitto, "effnet-edge/status/+", received)  # after the program ended
    try:
        wait_for(received, 1)
    finally:
        sub.loop_stop()
    assert received == [status]


def test_unreachable_broker_is_one_line(deployed, video):
    line = one_line(camera(deployed, video, "--mqtt", f"127.0.0.1:{free_port()}"))
    assert line.startswith("error: cannot reach the MQTT broker")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("photos"), per_class=1, seed=4)


def test_mqtt_login_from_the_environment_or_a_file(deployed, photos, broker, tmp_path):
    """A broker with a password file: the login from MQTT_USERNAME and --mqtt-password-file is accepted, and each
    message of an image folder names its file; a wrong or missing login is one line."""
    passwd = tmp_path / "passwd"
    passwd.write_text("robot:s3cret robot\nwatcher:w4tch\n")
    subprocess.run(["mosquitto_passwd", "-U", str(passwd)], check=True)  # hashes the file in place: no password in argv
    port = broker("allow_anonymous false", f"password_file {passwd}")
    (tmp_path / "pw").write_text("s3cret robot\n")
    received = []
    sub = subscribe(port, "robot/vision", received, login=("watcher", "w4tch"))
    try:
        r = camera(deployed, photos, "--mqtt", f"127.0.0.1:{port}", "--mqtt-topic", "robot/vision",
                   "--mqtt-password-file", str(tmp_path / "pw"), env={"MQTT_USERNAME": "robot"})
        assert r.returncode == 0, r.stderr
        wait_for(received, 4)
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert [m["file"] for m in received] == [f"{c}/{c}_0.png" for c in sorted(CLASSES)]
    line = one_line(camera(deployed, photos, "--mqtt", f"127.0.0.1:{port}", env={"MQTT_USERNAME": "robot", "MQTT_PASSWORD": "wrong"}))
    assert line.startswith(f"error: the MQTT broker at 127.0.0.1:{port} refused the login of 'robot'") and "MQTT_PASSWORD" in line
    line = one_line(camera(deployed, photos, "--mqtt", f"127.0.0.1:{port}"))
    assert "wants a login" in line and "MQTT_USERNAME" in line


def _certificates(d: Path) -> dict:
    """A CA, a broker certificate for 127.0.0.1 and a client certificate it signed, and a second CA that signed neither."""
    d.mkdir()
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"]
    for ca in ("ca", "other-ca"):
        subprocess.run(["openssl", "req", "-x509", *ec, "-keyout", d / f"{ca}.key", "-out", d / f"{ca}.crt", "-subj", f"/CN={ca}"],
                       check=True, capture_output=True)
    for name, extra in (("server", ["-addext", "subjectAltName=IP:127.0.0.1"]), ("client", [])):
        subprocess.run(["openssl", "req", "-x509", "-CA", d / "ca.crt", "-CAkey", d / "ca.key", *ec, "-keyout", d / f"{name}.key",
                        "-out", d / f"{name}.crt", "-subj", f"/CN={name}", "-addext", "basicConstraints=CA:FALSE", *extra],
                       check=True, capture_output=True)
    return {name: str(d / name) for name in ("ca.crt", "other-ca.crt", "server.crt", "server.key", "client.crt", "client.key")}


def test_mqtt_over_tls_with_a_ca_and_a_client_certificate(deployed, photos, broker, tmp_path):
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed (apt-get install openssl)")
    c = _certificates(tmp_path / "tls")
    port = broker("allow_anonymous true", f"cafile {c['ca.crt']}", f"certfile {c['server.crt']}", f"keyfile {c['server.key']}",
                  "require_certificate true")
    tls = ["--mqtt-ca", c["ca.crt"], "--mqtt-cert", c["client.crt"], "--mqtt-key", c["client.key"]]
    received = []
    sub = subscribe(port, "effnet-edge/classification", received,
                    tls={"ca_certs": c["ca.crt"], "certfile": c["client.crt"], "keyfile": c["client.key"]})
    try:
        r = camera(deployed, photos, "--mqtt", f"127.0.0.1:{port}", *tls)
        assert r.returncode == 0, r.stderr
        wait_for(received, 4)
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert len(received) == 4 and {"file", "label", "topk"} <= set(received[0])
    line = one_line(camera(deployed, photos, "--mqtt", f"127.0.0.1:{port}"))  # plain MQTT to the TLS port
    assert "closed the connection without accepting it: if it is a TLS listener, pass --mqtt-ca FILE" in line
    line = one_line(camera(deployed, photos, "--mqtt", f"127.0.0.1:{port}", "--mqtt-ca", c["other-ca.crt"], *tls[2:]))
    assert "CERTIFICATE_VERIFY_FAILED" in line and "--mqtt-ca" in line


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
    args = [*deploy_args("openvino", tiny_checkpoint, colour_data, deployed),  # every stage cached
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
