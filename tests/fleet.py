"""A fleet of boards on loopback for the fleet tests: one real sshd per board (its own port and folder), one
Ansible inventory naming them, and a camera that never ends (an MJPEG stream) for their camera programs."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from board import free_port, wait_port

SSHD = "/usr/sbin/sshd"


def need_sshd() -> None:
    if not Path(SSHD).exists() or not shutil.which("ssh-keygen"):
        pytest.skip("openssh-server is not installed (apt-get install openssh-server; make test installs it as root)")
    if os.geteuid() != 0:
        pytest.skip("the loopback boards run sshd as root (as CI does)")


class Fleet:
    """`n` boards named board1..boardN, each an sshd on its own port with its folder under `root`."""

    def __init__(self, root: Path, n: int, camera_url: str):
        need_sshd()
        self.root, self.camera_url = root, camera_url
        keys = root / "keys"
        keys.mkdir(parents=True)
        for name in ("host_key", "client_key", "stranger_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)], check=True)
        (keys / "authorized_keys").write_text((keys / "client_key.pub").read_text())
        self.keys, self.sshd, self.ports = keys, {}, {}
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
        for i in range(1, n + 1):
            self.start(f"board{i}")

    def start(self, board: str) -> None:
        port = self.ports.get(board) or free_port()
        conf = self.root / f"{board}.sshd_config"
        conf.write_text(f"Port {port}\nListenAddress 127.0.0.1\nHostKey {self.keys / 'host_key'}\n"
                        f"AuthorizedKeysFile {self.keys / 'authorized_keys'}\nPasswordAuthentication no\n"
                        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\n"
                        f"PidFile {self.root / (board + '.pid')}\nMaxStartups 100\n")
        self.sshd[board] = subprocess.Popen([SSHD, "-D", "-e", "-f", str(conf)], stderr=subprocess.DEVNULL)
        self.ports[board] = port
        wait_port(port)

    def kill(self, board: str) -> None:
        """The board drops off the network: its sshd and every session through it."""
        subprocess.run(["pkill", "-KILL", "-P", str(self.sshd[board].pid)], check=False)
        self.sshd[board].kill()
        self.sshd[board].wait(timeout=10)

    def releases(self, board: str) -> list[str]:
        folder = self.dir(board) / "releases"
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []

    def dir(self, board: str) -> Path:
        return self.root / board / "effnet-fleet"

    def inventory(self, path: Path, key: str = "client_key", extra: dict[str, str] | None = None, source: bool = True,
                  **board_vars) -> Path:
        """An INI inventory as a user writes one: a group of boards, their address and port, shared login settings."""
        lines = ["[boards]"]
        for board, port in self.ports.items():
            more = " ".join(f"{k}={v}" for k, v in {**board_vars, **(extra or {}).get(board, {})}.items())
            lines.append(f"{board} ansible_host=127.0.0.1 ansible_port={port} effnet_dir={self.dir(board)} {more}".rstrip())
        lines += ["", "[boards:vars]", "ansible_user=root", f"ansible_ssh_private_key_file={self.keys / key}",
                  f"ansible_ssh_common_args='-o UserKnownHostsFile={self.root / 'known_hosts'} -o StrictHostKeyChecking=accept-new'",
                  f"effnet_camera_args='{'--source ' + self.camera_url + ' ' if source else ''}--status-every 1 --stats-every 0'",
                  "effnet_service_manager=process", "ansible_python_interpreter=/usr/bin/python3"]
        path.write_text("\n".join(lines) + "\n")
        return path

    def current(self, board: str) -> str | None:
        link = self.dir(board) / "current"
        return os.readlink(link).split("/")[-1] if link.is_symlink() else None

    def camera_pid(self, board: str) -> int | None:
        pid_file = self.dir(board) / "camera.pid"
        if not pid_file.exists():
            return None
        pid = int(pid_file.read_text())
        try:
            os.kill(pid, 0)
        except OSError:
            return None
        return pid

    def close(self) -> None:
        for board in list(self.sshd):
            pid = self.camera_pid(board)
            if pid:
                os.killpg(pid, signal.SIGTERM) if _is_leader(pid) else os.kill(pid, signal.SIGTERM)
            self.sshd[board].terminate()
            self.sshd[board].wait(timeout=10)


def _is_leader(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except OSError:
        return False
