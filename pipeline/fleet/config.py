"""The fleet commands' settings: which boards and how a rollout goes over them (frozen: a run's record holds them)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FleetConfig:
    """Where the fleet is and how a rollout goes over it."""

    fleet: str  # an Ansible inventory
    state: str = ""  # where records go (default runs/fleet/<inventory name>)
    limit: str = "all"  # Ansible's --limit: a group or pattern of boards
    forks: int = 10
    board_dir: str = "effnet-fleet"  # the boards' folder (relative to the login's home); the inventory may set effnet_dir
    health_s: float = 60.0  # how long the camera program has to come back classifying

    @property
    def state_dir(self) -> Path:
        return Path(self.state) if self.state else Path("runs") / "fleet" / Path(self.fleet).stem


@dataclass(frozen=True)
class RolloutConfig:
    canary: str = "1"  # boards (or a share, "10%") that go first, alone
    batch: str = "25%"  # then the rest, this many at a time
    budget_ms: float = 0.0  # p99 on the board must fit (0: not checked)
    data: str = ""  # images here, copied to every board for the gate (default: the deploy's own labelled folder)
    board_data: str = ""  # or a folder already on every board: labelled, or the frames make capture took there
    strict: bool = False  # an inconclusive gate on a board fails it
    keep: int = 3  # releases each board keeps
    latency_runs: int = 100
