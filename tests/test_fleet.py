"""make rollout, make rollback and make fleet-status with real parts: sshd "boards" on loopback, the real
ansible-playbook, a real mosquitto, the boards' camera programs on a real MJPEG stream. The boards have no systemd:
the playbook runs the camera program as a process with a pid file, and checks it the same way (its status file)."""
from __future__ import annotations

import getpass
import json
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from board import MjpegServer, free_port, wait_port
from conftest import CLASSES, make_image
from fleet import Fleet
from pipeline import PipelineError
from pipeline.fleet.config import FleetConfig, RolloutConfig
from pipeline.fleet.rollout import release_id, rollback, rollout

BOARD_SH = Path(__file__).parents[1] / "pipeline" / "fleet" / "files" / "board.sh"


@pytest.fixture(scope="module")
def camera():
    """A camera that never ends: every board's camera program reads this MJPEG stream."""
    rng = np.random.default_rng(3)
    server = MjpegServer([make_image(CLASSES[i % 4], rng, 96) for i in range(8)], 10**7, 0.05)
    yield server.url
    server.close()


@pytest.fixture(scope="module")
def good(deployed_tiny):
    return deployed_tiny("openvino")


def release_of(run: Path) -> str:
    return release_id(run / "bundle.tar.gz")


def variant(run: Path, dest: Path, edit) -> Path:
    """A copy of a deployed run folder whose bundle `edit(bundle)` changed: another release of the same deploy."""
    dest.mkdir(parents=True)
    shutil.copy(run / "report.json", dest / "report.json")
    shutil.copytree(run / "bundle", dest / "bundle")
    edit(dest / "bundle")
    with tarfile.open(dest / "bundle.tar.gz", "w:gz") as tar:
        tar.add(dest / "bundle", arcname="bundle")
    return dest


def fc(fleet_ini: Path, state: Path, **kw) -> FleetConfig:
    return FleetConfig(str(fleet_ini), state=str(state), health_s=kw.pop("health_s", 60), **kw)


# --- the board's own script, on this machine's shell -------------------------------------------------------------

def board_sh(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(BOARD_SH), *args], capture_output=True, text=True)


def test_the_board_switches_by_renaming_a_link_and_keeps_the_newest_releases(tmp_path):
    d = tmp_path / "effnet-fleet"
    assert board_sh("preflight", str(d), "1").returncode == 0
    for name in ("r1", "r2", "r3", "r4"):
        (d / "releases" / name).mkdir()
        time.sleep(0.01)  # prune keeps the newest by time
    assert board_sh("switch", str(d), "r1").returncode == 0 and not (d / "previous").exists()
    assert board_sh("switch", str(d), "r2").stdout.strip() == "switched r1 -> r2"
    assert (d / "current").resolve().name == "r2" and (d / "previous").resolve().name == "r1"
    assert board_sh("revert", str(d)).stdout.strip() == "reverted r2 -> r1"  # make rollback: current and previous swap
    assert (d / "current").resolve().name == "r1" and (d / "previous").resolve().name == "r2"
    assert board_sh("revert", str(d), "r2", "").returncode == 0 and not (d / "previous").exists()  # a failed rollout's way back
    assert board_sh("revert", str(d), "").stdout.strip() == "reverted r2 -> nothing" and not (d / "current").exists()
    assert board_sh("switch", str(d), "r9").stderr.strip() == "no release r9 on the board"
    board_sh("switch", str(d), "r1")
    board_sh("switch", str(d), "r3")
    assert board_sh("prune", str(d), "2").returncode == 0  # the newest 2 (r4, r3) and previous (r1) stay
    assert sorted(p.name for p in (d / "releases").iterdir()) == ["r1", "r3", "r4"]
    assert not list(d.glob(".*.new"))  # no link left half-made


def test_a_full_disk_is_one_line_before_anything_is_copied(tmp_path):
    r = board_sh("preflight", str(tmp_path / "d"), str(10**12))
    assert r.returncode == 1 and r.stderr.startswith("the board's disk is full:") and "free some space" in r.stderr


def test_a_board_that_must_build_a_wheel_without_a_compiler_is_told_which_to_install(tmp_path):
    """A requirement with no wheel for the board (here a local C extension) and a compiler that fails (CC=/bin/false,
    as on a board without build-essential): the venv step is one line naming the packages that give one."""
    import os

    if not Path("/usr/bin/python3").exists() or subprocess.run(["/usr/bin/python3", "-c", "import setuptools"]).returncode:
        pytest.skip("the system python3 has no setuptools to build with")
    wheels = tmp_path / "wheels"  # the one other requirement of a fleet's venv, so pip needs no index
    r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels), "paho-mqtt==2.2.0"],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot fetch paho-mqtt's wheel: {r.stderr.strip()[-200:]}")
    pkg = tmp_path / "cext"
    pkg.mkdir()
    (pkg / "cext.c").write_text("#include <Python.h>\nstatic struct PyModuleDef m = {PyModuleDef_HEAD_INIT, \"cext\"};\n"
                                "PyMODINIT_FUNC PyInit_cext(void) { return PyModule_Create(&m); }\n")
    (pkg / "setup.py").write_text("from setuptools import setup, Extension\n"
                                  "setup(name='cext', version='1.0', ext_modules=[Extension('cext', ['cext.c'])])\n")
    release = tmp_path / "effnet-fleet" / "releases" / "r1"
    release.mkdir(parents=True)
    (release / "requirements.txt").write_text(f"{pkg}\n")
    env = {**os.environ, "CC": "/bin/false", "PATH": "/usr/bin:/bin"}
    r = subprocess.run(["sh", str(BOARD_SH), "install", str(tmp_path / "effnet-fleet"), "r1", "--no-index", "--no-build-isolation",
                        "--find-links", str(wheels)], capture_output=True, text=True, env=env)
    assert r.returncode == 1 and r.stderr.startswith("pip needs a C compiler on the board to build a wheel"), r.stderr
    assert r.stderr.strip().endswith("sudo apt install build-essential python3-dev") and len(r.stderr.strip().splitlines()) == 1
    assert not list((tmp_path / "effnet-fleet" / "venvs").glob("*/bin"))  # no half-made venv left for the next try


# --- the inventory -----------------------------------------------------------------------------------------------

def test_a_missing_or_unparsable_inventory_is_one_line(good, tmp_path):
    with pytest.raises(PipelineError, match="no such inventory"):
        rollout(fc(tmp_path / "nope.ini", tmp_path / "s"), RolloutConfig(), good)
    bad = tmp_path / "bad.ini"
    bad.write_text("[boards\nboard1 ansible_host=127.0.0.1\n")
    with pytest.raises(PipelineError, match="does not parse as an Ansible inventory") as e:
        rollout(fc(bad, tmp_path / "s"), RolloutConfig(), good)
    assert "\n" not in str(e.value)
    empty = tmp_path / "empty.ini"
    empty.write_text("[boards]\n")
    with pytest.raises(PipelineError, match="lists no boards"):
        rollout(fc(empty, tmp_path / "s"), RolloutConfig(), good)


# --- faults on real boards: each one line, no board changed --------------------------------------------------------

@pytest.fixture(scope="module")
def two_boards(tmp_path_factory, camera):
    fleet = Fleet(tmp_path_factory.mktemp("fleet2"), 2, camera)
    yield fleet
    fleet.close()


def test_an_unreachable_board_stops_the_rollout_before_any_board_is_touched(good, two_boards, tmp_path):
    ini = two_boards.inventory(tmp_path / "fleet.ini")
    ini.write_text(ini.read_text().replace("[boards:vars]", f"ghost ansible_host=127.0.0.1 ansible_port={free_port()}\n\n[boards:vars]"))
    with pytest.raises(PipelineError) as e:
        rollout(fc(ini, tmp_path / "s"), RolloutConfig(), good)
    line = str(e.value)
    assert "ghost is unreachable" in line and "ansible_port" in line and "No board was changed." in line and "\n" not in line
    assert all(not two_boards.releases(b) and two_boards.current(b) is None for b in ("board1", "board2"))


def test_a_refused_key_is_one_line_naming_the_fix(good, two_boards, tmp_path):
    ini = two_boards.inventory(tmp_path / "fleet.ini", key="stranger_key")
    with pytest.raises(PipelineError, match="refused the ssh key .*authorized_keys") as e:
        rollout(fc(ini, tmp_path / "s"), RolloutConfig(), good)
    assert "No board was changed." in str(e.value)


def test_a_board_that_cannot_install_the_runtime_is_left_on_its_release(good, two_boards, tmp_path):
    """pip with no way to the packages (as a board offline, or a runtime with no wheel for it): the canary fails at its
    venv, one line with pip's own words, and no board switches."""
    ini = two_boards.inventory(tmp_path / "fleet.ini", effnet_pip_args="'--no-index --find-links /nonexistent'")
    with pytest.raises(PipelineError) as e:
        rollout(fc(ini, tmp_path / "s"), RolloutConfig(), good)
    line = str(e.value)
    assert "failed at 'The release's own venv with the board's requirements'" in line
    assert "pip could not install the release's requirements" in line and "it was not switched" in line
    assert two_boards.current("board1") is None and two_boards.current("board2") is None


def test_a_full_board_disk_is_found_before_anything_is_copied(good, two_boards, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        ini = two_boards.inventory(tmp_path / "fleet.ini", extra={"board2": {"effnet_dir": str(small / "effnet-fleet")}})
        with pytest.raises(PipelineError, match="board2: the board's disk is full: .* free some space") as e:
            rollout(fc(ini, tmp_path / "s"), RolloutConfig(), good)
        assert str(e.value).endswith("(KEEP=). No board was changed.")
        assert two_boards.current("board1") is None and two_boards.current("board2") is None
    finally:
        subprocess.run(["umount", str(small)])


def test_fleet_status_says_which_boards_answer_and_which_need_a_look(two_boards, tmp_path):
    from pipeline.fleet.status import fleet_status

    ini = two_boards.inventory(tmp_path / "fleet.ini")
    ini.write_text(ini.read_text().replace("[boards:vars]", f"ghost ansible_host=127.0.0.1 ansible_port={free_port()}\n\n[boards:vars]"))
    result = fleet_status(fc(ini, tmp_path / "state"), None, log=lambda text: None)
    rows = result["boards"]
    assert rows["board1"]["reachable"] and rows["board1"]["flags"] == ["stale"]  # no camera program has reported yet
    assert not rows["ghost"]["reachable"] and rows["ghost"]["flags"][0] == "unreachable"
    assert result["line"].startswith("board1: stale; board2: stale; ghost: unreachable")
    md = (tmp_path / "state" / "fleet-status.md").read_text()
    assert "| ghost | no |" in md and json.loads((tmp_path / "state" / "fleet-status.json").read_text())["flagged"]


# --- rollouts end to end ---------------------------------------------------------------------------------------------

@pytest.fixture
def mosquitto(tmp_path):
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto; make test installs it as root)")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"user {getpass.getuser()}\nlistener {port} 127.0.0.1\nallow_anonymous true\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


def frames_now(fleet: Fleet, board: str) -> tuple[str, int]:
    status = json.loads((fleet.dir(board) / "status.json").read_text())
    return status["release"], status["frames"]


def still_classifying(fleet: Fleet, board: str, release: str) -> bool:
    first = frames_now(fleet, board)
    time.sleep(2.5)
    now = frames_now(fleet, board)
    return first[0] == now[0] == release and now[1] > first[1]


@pytest.mark.e2e  # ~4 min: three rollouts and a rollback over three boards
def test_good_release_everywhere_bad_release_stopped_at_the_canary_and_rollback(good, camera, mosquitto, tmp_path):
    from pipeline.fleet.status import fleet_status
    from test_shadow import broken_copy

    fleet = Fleet(tmp_path / "boards", 3, camera)
    try:
        ini = fleet.inventory(tmp_path / "fleet.ini")
        ini.write_text(ini.read_text().replace("--stats-every 0'", f"--stats-every 0 --mqtt {mosquitto} --shadow 2'"))
        conf = fc(ini, tmp_path / "state")
        first = rollout(conf, RolloutConfig(canary="1", batch="100%"), good)
        a = release_of(good)
        assert first["complete"] and first["release"] == a and set(first["switched"]) == {"board1", "board2", "board3"}
        for board in ("board1", "board2", "board3"):
            record = first["boards"][board]
            assert fleet.current(board) == a and record["proof"]["gate_exit"] == 0 and record["proof"]["latency"]["p99"] > 0
            assert record["phases_s"]["total"] > 0 and still_classifying(fleet, board, a)
        md = (tmp_path / "state" / "last-rollout.json").read_text()
        assert json.loads(md)["release"] == a

        status = fleet_status(conf, mosquitto, wait=2)  # retained: this subscriber came after every message
        for board in ("board1", "board2", "board3"):
            row = status["boards"][board]
            assert row["reachable"] and row["release"] == a and row["verified"] and row["via"] == "mqtt" and row["fps"] > 0
            assert row["shadow"]["frames"] > 0 and row["proof_latency_ms"]["p99"] > 0 and row["isa"]
        assert not status["flagged"] and (tmp_path / "state" / "fleet-status.png").stat().st_size > 5000
        assert "| board1 | yes |" in (tmp_path / "state" / "fleet-status.md").read_text()

        bad = variant(good, tmp_path / "bad", lambda b: broken_copy(b, tmp_path / "broken") and _swap(b, tmp_path / "broken"))
        with pytest.raises(PipelineError, match="board1 failed at 'The gate must pass on the board'") as e:
            rollout(conf, RolloutConfig(canary="1", batch="100%"), bad)
        assert "it was not switched. 0 switched, 2 left untouched." in str(e.value)
        assert all(fleet.current(b) == a and still_classifying(fleet, b, a) for b in ("board1", "board2", "board3"))

        b_run = variant(good, tmp_path / "b", lambda b: (b / "README.md").write_text("release B\n"))
        second = rollout(conf, RolloutConfig(canary="1", batch="2"), b_run)
        b = second["release"]
        assert second["complete"] and all(fleet.current(x) == b for x in ("board1", "board2", "board3"))
        back = rollback(conf)
        assert back["complete"] and all(fleet.current(x) == a and still_classifying(fleet, x, a) for x in ("board1", "board2", "board3"))
        assert all((fleet.dir(x) / "previous").resolve().name == b for x in ("board1", "board2", "board3"))
        status = fleet_status(conf, mosquitto, wait=2)  # back on A, which each board proved before: nothing to flag
        assert status["release"] == a and not status["flagged"], status["flagged"]
        fleet.kill("board2")
        status = fleet_status(conf, mosquitto, wait=2)
        assert set(status["flagged"]) == {"board2"} and "unreachable" in status["flagged"]["board2"]
    finally:
        fleet.close()


def _swap(bundle: Path, broken: Path) -> bool:
    """Put the broken copy's model and config in place of the bundle's own."""
    shutil.copy(broken / "config.json", bundle / "config.json")
    for f in (broken / "model").iterdir():
        shutil.copy(f, bundle / "model" / f.name)
    return True


@pytest.mark.e2e  # ~2 min
def test_a_release_whose_camera_program_does_not_come_back_is_undone(good, camera, tmp_path):
    """The proof passes (the model is fine) but the camera program cannot start: the release's camera profile names a
    camera this board lacks (the inventory gives no --source). The board goes back to the release it ran, running."""
    def camera_profile(source: str):
        def edit(bundle: Path) -> None:
            config = json.loads((bundle / "config.json").read_text())
            config["camera"] = {"source": source}
            (bundle / "config.json").write_text(json.dumps(config))
        return edit

    fleet = Fleet(tmp_path / "boards", 2, camera)
    try:
        conf = fc(fleet.inventory(tmp_path / "fleet.ini", source=False), tmp_path / "state", health_s=20)
        a = rollout(conf, RolloutConfig(batch="100%"), variant(good, tmp_path / "a", camera_profile(camera)))["release"]
        broken = variant(good, tmp_path / "nocam", camera_profile("/dev/video-that-is-not-there"))
        with pytest.raises(PipelineError, match="board1 failed at 'It must come back classifying frames'.*it is back on " + a):
            rollout(conf, RolloutConfig(batch="100%"), broken)
        assert fleet.current("board1") == a and fleet.current("board2") == a
        record = json.loads((tmp_path / "state" / "last-rollout.json").read_text())["boards"]["board1"]
        assert record["reverted"] and record["back_running"] and still_classifying(fleet, "board1", a)
        assert "did not come back classifying frames within 20 s" in record["why"]
    finally:
        fleet.close()


@pytest.mark.e2e  # ~2 min
def test_a_board_lost_mid_rollout_is_reported_and_left_on_its_release(good, camera, tmp_path):
    fleet = Fleet(tmp_path / "boards", 3, camera)
    try:
        ini = fleet.inventory(tmp_path / "fleet.ini")
        conf = fc(ini, tmp_path / "state")
        frames = tmp_path / "frames"  # what ./run.sh capture leaves on a board: flat JPEGs, no labels
        frames.mkdir()
        rng = np.random.default_rng(9)
        for i in range(12):
            cv2.imwrite(str(frames / f"frame-{i:05d}.jpg"), make_image(CLASSES[i % 4], rng))
        first = rollout(conf, RolloutConfig(batch="100%", board_data=str(frames), strict=True), good)
        a = first["release"]
        assert all(r["proof"]["gate"]["verdict"] == "passed" and r["proof"]["gate"]["frames"]["images"] == 12
                   for r in first["boards"].values())
        b_run = variant(good, tmp_path / "b", lambda b: (b / "README.md").write_text("release B\n"))
        b = release_of(b_run)
        lost = threading.Event()

        def lose_board3() -> None:  # as soon as board3 has the new release unpacked, it drops off the network
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and not (fleet.dir("board3") / "releases" / b / "config.json").exists():
                time.sleep(0.05)
            fleet.kill("board3")
            lost.set()

        threading.Thread(target=lose_board3, daemon=True).start()
        with pytest.raises(PipelineError, match="board3") as e:
            rollout(conf, RolloutConfig(canary="1", batch="100%"), b_run)
        assert lost.is_set()
        line = str(e.value)
        assert "board3 is unreachable" in line or "board3 failed" in line
        record = json.loads((tmp_path / "state" / "last-rollout.json").read_text())
        assert record["boards"]["board3"]["result"] in ("unreachable", "failed") and not record["complete"]
        assert fleet.current("board3") == a  # never switched: its proof was cut off
        assert fleet.current("board1") == b  # the canary had passed
    finally:
        fleet.close()


def test_no_fleet_or_no_images_is_one_line_before_anything_is_written(good, tmp_path):
    with pytest.raises(PipelineError, match="need FLEET=inventory.ini"):
        rollout(fc("", tmp_path / "s"), RolloutConfig(), good)
    ini = tmp_path / "fleet.ini"
    ini.write_text("[boards]\nboard1 ansible_host=127.0.0.1\n")
    with pytest.raises(PipelineError, match="DATA=.*nowhere: no images for the boards' gate"):
        rollout(fc(ini, tmp_path / "s"), RolloutConfig(data=str(tmp_path / "nowhere")), good)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("verb", ["rollout", "rollback", "fleet-status"])
def test_the_fleet_verbs_say_a_bad_inventory_in_one_line(verb, good, tmp_path, capsys):
    from pipeline.cli import main

    bad = tmp_path / "bad.ini"
    bad.write_text("[boards\n")
    args = [verb, "--fleet", str(bad), "--state", str(tmp_path / "s")] + (["--out", str(good)] if verb == "rollout" else [])
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: FLEET=") and "does not parse as an Ansible inventory" in err[0]
