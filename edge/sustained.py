"""A sustained run: the int8 model classifying back to back for minutes, as a board in the field does, with what the
board says of its temperature, clock and throttling beside each minute's latency. A short benchmark (ours, the
runtimes' own tools) measures a cool CPU at its boost clock; a drone's or a camera's board runs for hours, warm.

Each window (a minute by default) gives p50, p99 and images/s, the CPU temperature (the hottest of
/sys/class/thermal's zones, else hwmon), the clock (cpufreq's mean over the cores, else /proc/cpuinfo) and the board's
own throttling word where it has one (`vcgencmd get_throttled` on a Raspberry Pi, a `tegrastats` line on a Jetson).
A sensor the board lacks is said once and left out. The last line says whether the last window's p99 is more than
10 % worse than the first's, and whether the clock fell with it.

Device side: numpy and the standard library (matplotlib for the plot, where it is installed).
"""
from __future__ import annotations

import glob
import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

SLOWER = 1.10  # the last window's p99 over the first's that counts as slowing down
SAMPLE_EVERY_S = 5.0  # temperature and clock between windows, for the plot


@dataclass(frozen=True)
class Sensors:
    """Where this board's sensors are read (a test points them at a folder of its own)."""

    sys: Path = Path("/sys")
    proc: Path = Path("/proc")

    def temperature_c(self) -> float | None:
        """The hottest thermal zone (or hwmon sensor) in degrees C; None where the board exposes neither."""
        files = glob.glob(str(self.sys / "class/thermal/thermal_zone*/temp")) or glob.glob(str(self.sys / "class/hwmon/hwmon*/temp*_input"))
        values = [v / 1000.0 for v in (_number(f) for f in files) if v is not None and v > 0]
        return max(values) if values else None

    def clock_mhz(self) -> float | None:
        """The cores' mean current clock in MHz (cpufreq; else /proc/cpuinfo's); None where neither says."""
        khz = [v for v in (_number(f) for f in glob.glob(str(self.sys / "devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq"))) if v]
        if khz:
            return float(np.mean(khz)) / 1000.0
        try:
            mhz = [float(line.split(":")[1]) for line in (self.proc / "cpuinfo").read_text().splitlines() if line.startswith("cpu MHz")]
        except (OSError, ValueError, IndexError):
            return None
        return float(np.mean(mhz)) if mhz else None

    def clock_source(self) -> str | None:
        if glob.glob(str(self.sys / "devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq")):
            return "cpufreq"
        return "/proc/cpuinfo (a virtual machine's is often fixed)" if self.clock_mhz() is not None else None


def throttling() -> str | None:
    """The board's own throttling word: `vcgencmd get_throttled` (Raspberry Pi; 0x0 = never throttled) or one
    `tegrastats` line (Jetson); None where neither tool is installed."""
    if shutil.which("vcgencmd"):
        return _first_line(["vcgencmd", "get_throttled"])
    if shutil.which("tegrastats"):
        return _first_line(["tegrastats", "--interval", "100"], stop_after_s=1.0)
    return None


def _first_line(argv: list[str], stop_after_s: float = 5.0) -> str | None:
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            line = proc.stdout.readline().strip()
        finally:
            proc.kill()
            proc.wait(timeout=stop_after_s)
        return line or None
    except (OSError, subprocess.SubprocessError):
        return None


def _number(path: str) -> float | None:
    try:
        return float(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def absent(sensors: Sensors) -> list[str]:
    """One line per sensor this board lacks: said once, and the run carries on without it."""
    lines = []
    if sensors.temperature_c() is None:
        lines.append("no CPU temperature here (no /sys/class/thermal zone or hwmon sensor): temperature left out")
    if sensors.clock_mhz() is None:
        lines.append("no CPU clock here (no cpufreq, no cpu MHz in /proc/cpuinfo): clock left out")
    if throttling() is None:
        lines.append("no throttling word here (neither vcgencmd nor tegrastats): throttling left out")
    return lines


def run(infer: Callable[[np.ndarray], object], sample: np.ndarray, minutes: float, window_s: float = 60.0,
        sensors: Sensors = Sensors(), on_window: Callable[[dict], None] = lambda row: None) -> dict:
    """`infer(sample)` back to back for `minutes`, in windows of `window_s` seconds: one row per window."""
    infer(sample)  # the first call allocates; a real camera program has made it long before
    start = time.monotonic()
    end = start + minutes * 60.0
    windows, samples, next_sample = [], [], start
    while time.monotonic() < end:
        window_start = time.monotonic()
        window_end, times = min(window_start + window_s, end), []
        while (now := time.monotonic()) < window_end or not times:
            t0 = time.perf_counter()
            infer(sample)
            times.append((time.perf_counter() - t0) * 1000.0)
            if now >= next_sample:
                samples.append({"t_s": round(now - start, 2), "temp_c": sensors.temperature_c(), "clock_mhz": sensors.clock_mhz()})
                next_sample = now + SAMPLE_EVERY_S
        elapsed = time.monotonic() - window_start
        p50, p99 = np.percentile(times, [50, 99])
        row = {"window": len(windows) + 1, "end_s": round(time.monotonic() - start, 2), "p50_ms": float(p50), "p99_ms": float(p99),
               "images_per_s": len(times) / elapsed, "images": len(times), "temp_c": sensors.temperature_c(),
               "clock_mhz": sensors.clock_mhz(), "throttled": throttling()}
        windows.append(row)
        on_window(row)
    return {"minutes": minutes, "window_s": window_s, "windows": windows, "samples": samples,
            "clock_source": sensors.clock_source(), "absent": absent(sensors), "verdict": verdict(windows)}


def verdict(windows: list[dict]) -> str:
    """One line: did the last window's p99 grow more than 10 % over the first's, and did the clock fall with it."""
    if len(windows) < 2:
        return f"one window only ({windows[0]['p99_ms']:.2f} ms p99): run longer than one window to compare" if windows else "no window ran"
    first, last = windows[0], windows[-1]
    change = last["p99_ms"] / first["p99_ms"] - 1
    clocks = (first["clock_mhz"], last["clock_mhz"])
    if None in clocks:
        clock = "the clock is not known here"
    elif clocks[1] < clocks[0] * 0.97:
        clock = f"the clock fell from {clocks[0]:.0f} to {clocks[1]:.0f} MHz"
    else:
        clock = f"the clock held ({clocks[0]:.0f} -> {clocks[1]:.0f} MHz)"
    temps = "" if None in (first["temp_c"], last["temp_c"]) else f", {first['temp_c']:.0f} -> {last['temp_c']:.0f} C"
    if last["p99_ms"] > first["p99_ms"] * SLOWER:
        return (f"SLOWER: the last window's p99 is {100 * change:+.0f} % over the first's ({first['p99_ms']:.2f} -> "
                f"{last['p99_ms']:.2f} ms){temps}; {clock}")
    return (f"steady: the last window's p99 is within 10 % of the first's ({100 * change:+.1f} %, {first['p99_ms']:.2f} -> "
            f"{last['p99_ms']:.2f} ms){temps}; {clock}")


def window_line(row: dict) -> str:
    extra = "".join(f", {row[k]:.0f}{unit}" for k, unit in (("temp_c", " C"), ("clock_mhz", " MHz")) if row[k] is not None)
    return (f"[sustained] window {row['window']} (to {row['end_s']:.0f} s): p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms, "
            f"{row['images_per_s']:.1f} images/s{extra}" + (f", {row['throttled']}" if row["throttled"] else ""))


def plot(result: dict, path: Path, title: str) -> Path | None:
    """Latency (p50, p99) and temperature against time, as a PNG; None where matplotlib is not installed (the JSON
    holds the same figures)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    w = result["windows"]
    t = [r["end_s"] / 60 for r in w]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(t, [r["p50_ms"] for r in w], "o-", label="p50")
    ax.plot(t, [r["p99_ms"] for r in w], "s-", label="p99")
    ax.set_xlabel("minutes")
    ax.set_ylabel("latency, ms (batch 1)")
    ax.set_ylim(bottom=0)
    temps = [(s["t_s"] / 60, s["temp_c"]) for s in result["samples"] if s["temp_c"] is not None]
    if temps:
        ax2 = ax.twinx()
        ax2.plot(*zip(*temps), color="tab:red", alpha=0.6, label="CPU temperature")
        ax2.set_ylabel("CPU temperature, C")
    else:
        ax.text(0.01, 0.02, "no temperature sensor on this machine", transform=ax.transAxes, fontsize=8, color="grey")
    ax.legend(loc="upper left")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write(result: dict, out: Path, title: str) -> dict:
    """`out`.json and, with matplotlib, `out`.png; the paths written."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path = out.with_suffix(".json")
    json_path.write_text(json.dumps(result, indent=2))
    png = plot(result, out.with_suffix(".png"), title)
    return {"json": str(json_path), "plot": str(png) if png else None}
