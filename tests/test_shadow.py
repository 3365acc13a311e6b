"""The camera program's shadow check (--shadow N): the bundle's float model beside int8 on sampled frames, in the
board venv, on a real video, against a good bundle and one whose int8 model is deliberately broken."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from board import board_venv, write_video
from conftest import CLASSES, make_image
from test_bundle_camera import run_board, summary_of
from test_mqtt_push import broker, mosquitto, subscribe, wait_for  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def bundle(deployed_tiny) -> Path:
    return deployed_tiny("openvino") / "bundle"


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    rng = np.random.default_rng(21)
    frames = [cv2.resize(make_image(CLASSES[i // 15], rng), (160, 120)) for i in range(60)]
    return write_video(tmp_path_factory.mktemp("video") / "colours.avi", frames)


def broken_copy(bundle: Path, dest: Path) -> Path:
    """The bundle with its real int8 model's class outputs rotated (class c answered as c+1): a valid IR, in the
    same runtime, that disagrees with float on every frame where int8 agreed."""
    import openvino as ov
    from openvino import opset13 as ops

    shutil.copytree(bundle, dest)
    config = json.loads((dest / "config.json").read_text())
    model = ov.Core().read_model(str(dest / config["artifact"]))
    result = model.get_results()[0]
    rotated = ops.gather(result.input_value(0), ops.constant(np.roll(np.arange(len(CLASSES)), -1)), ops.constant(1))
    result.input(0).replace_source_output(rotated.output(0))
    ov.save_model(model, str(dest / "model" / "broken.xml"), compress_to_fp16=False)
    config["artifact"] = "model/broken.xml"
    (dest / "config.json").write_text(json.dumps(config, indent=2))
    return dest


def shadow_run(bundle: Path, video: Path, out: Path, *args):
    r = run_board(board_venv(), bundle, "--source", str(video), "--headless", "--json", str(out), "--shadow", "1",
                  "--stats-every", "0.01", *args)
    assert r.returncode == 0, r.stderr
    return r, [json.loads(line) for line in out.read_text().splitlines()]


def test_a_good_int8_model_agrees_and_raises_no_alert(bundle, video, tmp_path):
    r, records = shadow_run(bundle, video, tmp_path / "out.jsonl")
    s = summary_of(r.stderr)["shadow"]
    deploy = json.loads((bundle / "config.json").read_text())["host"]["fidelity"]
    assert s["reference"]["agreement"] == deploy["agreement"] and s["reference"]["ci95"] == deploy["agreement_ci95"]
    assert s["alert"] is None and "warning: shadow check" not in r.stderr
    # Every frame offered, none queued: shadowed + skipped while the float model was busy = all 60.
    assert s["frames"] + s["skipped_busy"] == 60 and s["frames"] >= 10
    assert s["agreement"] == pytest.approx(s["agree"] / s["frames"], abs=1e-4) and s["ci95"][0] <= s["agreement"] <= s["ci95"][1]
    assert s["ci95"][1] >= s["alert_below"]
    running = [rec["shadow"] for rec in records if "shadow" in rec]
    assert running and [x["frames"] for x in running] == sorted(x["frames"] for x in running)
    assert "shadow agreement" in r.stderr and r.stderr.splitlines()[1].startswith("shadow check: float on 1 frame in 1")
    r, _ = shadow_run(bundle, video, tmp_path / "off.jsonl", "--shadow", "0")
    assert "shadow" not in summary_of(r.stderr) and "shadow" not in (tmp_path / "off.jsonl").read_text()


def test_a_broken_int8_model_raises_one_alert_on_stderr_and_mqtt(bundle, video, mosquitto, tmp_path):  # noqa: F811
    broken = broken_copy(bundle, tmp_path / "broken")
    alerts, classified = [], []
    subs = [subscribe(mosquitto, "site/alert", alerts), subscribe(mosquitto, "site/vision", classified)]
    try:
        r, records = shadow_run(broken, video, tmp_path / "out.jsonl", "--mqtt", f"127.0.0.1:{mosquitto}",
                                "--mqtt-topic", "site/vision", "--mqtt-alert-topic", "site/alert")
        wait_for(classified, 60)
        wait_for(alerts, 1)
    finally:
        for sub in subs:
            sub.loop_stop()
            sub.disconnect()
    s = summary_of(r.stderr)["shadow"]
    assert s["agreement"] < 0.3 and s["ci95"][1] < s["alert_below"]
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning: shadow check:")]
    assert len(warnings) == 1 and "clearly below" in warnings[0] and "make capture" in warnings[0]
    assert len(alerts) == 1 and alerts[0]["alert"] == "int8_fidelity" and alerts[0]["message"] == s["alert"]
    assert warnings[0].endswith(s["alert"]) and alerts[0]["shadow"]["frames"] >= 10
    assert len(classified) == 60 and classified[-1]["shadow"] == records[-1]["shadow"]


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    """Frames as make capture leaves them on a board: one flat folder of JPEGs, no labels."""
    folder = tmp_path_factory.mktemp("captured")
    rng = np.random.default_rng(5)
    for i in range(24):
        cv2.imwrite(str(folder / f"frame-{i:05d}.jpg"), cv2.resize(make_image(CLASSES[i % 4], rng), (160, 120)))
    (folder / "capture.json").write_text("{}")
    return folder


def test_validate_judges_frames_without_labels_against_deploys_agreement(bundle, frames, tmp_path):
    """./run.sh validate on the board's own frames (what make rollout gates a board on with BOARD_DATA=): int8 against
    the bundle's float model, passed when not clearly below what deploy measured, failed when clearly below."""
    r = run_board(board_venv(), bundle, "validate", "--data", str(frames), "--out", str(tmp_path / "good"), "--runs", "5")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "good" / "report.json").read_text())
    assert report["verdict"] == "passed" and report["frames"]["images"] == 24 and r.stdout.startswith("PASSED: int8 agrees")
    lo, hi = report["frames"]["ci95"]
    assert hi >= report["reference"]["ci95"][0] - report["margin"] and lo <= report["frames"]["agreement"] <= hi
    broken = broken_copy(bundle, tmp_path / "broken")
    r = run_board(board_venv(), broken, "validate", "--data", str(frames), "--out", str(tmp_path / "bad"), "--runs", "5")
    assert r.returncode == 3 and r.stdout.startswith("FAILED: int8 agrees with float on")
    assert "clearly below deploy's" in r.stdout and json.loads((tmp_path / "bad" / "report.json").read_text())["failures"]


def test_few_frames_or_no_deploy_figure_leave_frames_inconclusive():
    from edge.validate_frames import frames_report

    ref = {"agreement": 0.98, "ci95": [0.9, 1.0], "images": 48, "on": "images at deploy"}
    assert frames_report(0, 9, ref, strict=False)["verdict"] == "inconclusive"  # 9 frames: no verdict, however bad
    assert frames_report(30, 30, None, strict=False)["verdict"] == "inconclusive"
    assert not frames_report(30, 30, None, strict=True)["ships"]
    assert frames_report(28, 30, ref, strict=True)["ships"] and frames_report(3, 30, ref, strict=False)["verdict"] == "failed"
