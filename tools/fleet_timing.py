"""How long a rollout takes to N loopback boards, and where the time goes: the boards' own phases (release in place,
images, proof, switch and health) against Ansible's share (preflight, task start-up, records).

    python tools/fleet_timing.py RUN_DIR 3 10      # a deployed run folder, then fleet sizes

Each size gets fresh sshd boards on loopback (tests/fleet.py), a camera stream, and one rollout with the defaults
(canary 1, then 25 % at a time). Boards on loopback share this machine's cores: a phase that computes (the venv's pip,
the proof) takes longer the more boards run it at once.
"""
from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).parents[1] / "tests"), str(Path(__file__).parents[1])]

import numpy as np  # noqa: E402

from board import MjpegServer  # noqa: E402
from conftest import CLASSES, make_image  # noqa: E402
from fleet import Fleet  # noqa: E402
from pipeline.fleet.config import FleetConfig, RolloutConfig  # noqa: E402
from pipeline.fleet.rollout import PHASES, rollout  # noqa: E402


def measure(run: Path, n: int) -> dict:
    root = Path(tempfile.mkdtemp(prefix=f"fleet{n}-"))
    rng = np.random.default_rng(0)
    camera = MjpegServer([make_image(CLASSES[i % 4], rng, 160) for i in range(8)], 10**7, 0.05)
    fleet = Fleet(root / "boards", n, camera.url)
    try:
        t0 = time.monotonic()
        result = rollout(FleetConfig(str(fleet.inventory(root / "fleet.ini")), state=str(root / "state")), RolloutConfig(),
                         run, log=lambda line: None)
        wall = time.monotonic() - t0
    finally:
        fleet.close()
        camera.close()
        shutil.rmtree(root, ignore_errors=True)
    boards = [r for r in result["boards"].values() if r.get("phases_s")]
    phases = {name: statistics.mean(b["phases_s"][name] for b in boards) for name, _, _ in PHASES}
    # The boards' critical path: batches run one after another, each as long as its slowest board.
    batches = batch_sizes(n)
    totals = sorted((b for b in boards), key=lambda b: float(b["marks"]["start"]))
    critical, i = 0.0, 0
    for size in batches:
        critical += max(b["phases_s"]["total"] for b in totals[i : i + size])
        i += size
    return {"boards": n, "batches": batches, "wall_s": round(wall, 1), "boards_critical_path_s": round(critical, 1),
            "ansible_and_preflight_s": round(wall - critical, 1), "mean_phase_s": {k: round(v, 1) for k, v in phases.items()}}


def batch_sizes(n: int, canary: int = 1, share: float = 0.25) -> list[int]:
    """Ansible's serial [1, "25%"]: the canary, then batches of 25 % of the fleet (at least 1)."""
    sizes, left, step = [min(canary, n)], n - min(canary, n), max(1, int(n * share))
    while left > 0:
        sizes.append(min(step, left))
        left -= sizes[-1]
    return sizes


if __name__ == "__main__":
    run_dir = Path(sys.argv[1])
    for size in map(int, sys.argv[2:] or ["3", "10"]):
        print(measure(run_dir, size), flush=True)
