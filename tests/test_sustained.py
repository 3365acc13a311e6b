"""The sustained run's parts (edge.sustained): the board's sensor files, the verdict line, a run of real windows."""
from __future__ import annotations

import time

import numpy as np

from edge import sustained
from edge.sustained import Sensors


def _board_files(root, temps_milli, freqs_khz):
    for i, t in enumerate(temps_milli):
        zone = root / "sys/class/thermal" / f"thermal_zone{i}"
        zone.mkdir(parents=True)
        (zone / "temp").write_text(f"{t}\n")
    for i, f in enumerate(freqs_khz):
        cpu = root / "sys/devices/system/cpu" / f"cpu{i}" / "cpufreq"
        cpu.mkdir(parents=True)
        (cpu / "scaling_cur_freq").write_text(f"{f}\n")
    (root / "proc").mkdir(exist_ok=True)
    return Sensors(root / "sys", root / "proc")


def test_sensors_read_the_boards_own_files(tmp_path):
    """The hottest thermal zone in C; cpufreq's mean clock in MHz, as a Pi or a Jetson writes them."""
    s = _board_files(tmp_path, [45000, 61500], [1500000, 1800000])
    assert s.temperature_c() == 61.5 and s.clock_mhz() == 1650.0 and s.clock_source() == "cpufreq"


def test_a_missing_sensor_is_said_once_and_left_out(tmp_path):
    (tmp_path / "sys").mkdir()
    (tmp_path / "proc").mkdir()
    bare = Sensors(tmp_path / "sys", tmp_path / "proc")
    assert bare.temperature_c() is None and bare.clock_mhz() is None
    lines = sustained.absent(bare)
    assert any(line.startswith("no CPU temperature here") for line in lines)
    assert any(line.startswith("no CPU clock here") for line in lines)
    result = sustained.run(lambda x: x.sum(), np.ones((1, 3, 8, 8), np.float32), minutes=0.5 / 60, window_s=0.2, sensors=bare)
    assert len(result["windows"]) >= 2 and all(w["temp_c"] is None and w["clock_mhz"] is None for w in result["windows"])
    assert "the clock is not known here" in result["verdict"]


def test_windows_time_the_model_and_the_verdict_sees_a_slowdown(tmp_path):
    """A model that slows down as it runs (as a board that heats up and throttles): its last window's p99 is said to be
    over 10 % worse than the first's, with the clock the board reported."""
    sensors = _board_files(tmp_path, [50000], [1800000])
    start = time.monotonic()

    def warming(x):  # 2 ms at first, 8 ms after a second
        time.sleep(0.002 if time.monotonic() - start < 1.0 else 0.008)

    rows = []
    result = sustained.run(warming, np.zeros(1), minutes=2.0 / 60, window_s=0.5, sensors=sensors, on_window=rows.append)
    assert rows == result["windows"] and len(rows) == 4
    assert all(r["images"] > 20 and r["p50_ms"] <= r["p99_ms"] for r in rows)
    assert 1.9 < rows[0]["p50_ms"] < 6 and rows[-1]["p50_ms"] > 7.9  # timed what ran
    assert result["verdict"].startswith("SLOWER: the last window's p99 is +") and "the clock held (1800 -> 1800 MHz)" in result["verdict"]
    assert rows[0]["temp_c"] == 50.0 and result["samples"][0]["clock_mhz"] == 1800.0


def test_the_verdict_says_when_the_clock_fell_with_it():
    rows = [{"p99_ms": 10.0, "clock_mhz": 1800.0, "temp_c": 55.0}, {"p99_ms": 10.5, "clock_mhz": 1800.0, "temp_c": 60.0},
            {"p99_ms": 12.0, "clock_mhz": 1200.0, "temp_c": 82.0}]
    v = sustained.verdict(rows)
    assert v.startswith("SLOWER") and "+20 %" in v and "the clock fell from 1800 to 1200 MHz" in v and "55 -> 82 C" in v
    assert sustained.verdict(rows[:2]).startswith("steady: the last window's p99 is within 10 % of the first's (+5.0 %")
