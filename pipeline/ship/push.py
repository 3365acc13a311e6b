"""Push a bundle to a board over ssh: copy (rsync, else scp), optionally install and start it.

Keys only (BatchMode: ssh never asks for a password). Every command is an argument list; the
one string that reaches the remote shell is built with shlex quoting from those lists.
"""
from __future__ import annotations

import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pipeline import PipelineError


@dataclass(frozen=True)
class Device:
    address: str  # user@host
    port: int = 22
    key: str | None = None  # identity file; default: ssh's own
    dest: str = "effnet-edge"  # folder on the board, relative to the login's home unless absolute
    known_hosts: str | None = None  # default: ssh's own ~/.ssh/known_hosts

    def ssh_options(self) -> list[str]:
        opts = ["-o", "BatchMode=yes", "-o", "PasswordAuthentication=no", "-o", "ConnectTimeout=10",
                "-o", "StrictHostKeyChecking=accept-new"]
        if self.key:
            opts += ["-i", self.key, "-o", "IdentitiesOnly=yes"]
        if self.known_hosts:
            opts += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
        return opts

    def ssh(self, *remote_argv: str) -> list[str]:
        return ["ssh", *self.ssh_options(), "-p", str(self.port), self.address, "--", shlex.join(remote_argv)]

    def sh(self, script: str, *args: str) -> list[str]:
        """Run a fixed script remotely with user values as positional parameters ($1, $2 ...), never spliced in."""
        return self.ssh("sh", "-c", script, "sh", *args)


def _run(cmd: list[str], what: str, capture: bool = False, log=print) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=capture, text=True)
    if r.returncode != 0:
        detail = (r.stderr or "").strip().splitlines()[-1:] if capture else []
        raise PipelineError(f"{what} failed (exit {r.returncode}){': ' + detail[0] if detail else ''}; check DEVICE, the ssh key and the board")
    return r


def reach(device: Device) -> None:
    """A login that does nothing: an unreachable board or a refused key is one line before any work."""
    _run(device.ssh("true"), f"ssh to {device.address} port {device.port}", capture=True)


def remote_output(device: Device, script: str, *args: str, what: str) -> str:
    """Run a fixed script in the bundle's folder on the board ($1 = the folder) and return its stdout."""
    return _run(device.sh(script, device.dest, *args), what, capture=True).stdout


def _ssh_command(device: Device) -> str:
    """ssh with the board's options, as rsync's -e takes it."""
    return shlex.join(["ssh", *device.ssh_options(), "-p", str(device.port)])


def fetch(device: Device, remote: str, local: Path, log=print) -> None:
    """Copy the folder `remote` (in the bundle's folder on the board) to `local` here (rsync, else scp)."""
    source = f"{device.address}:{device.dest}/{remote}"
    if shutil.which("rsync"):
        r = subprocess.run(["rsync", "-az", "--protect-args", "-e", _ssh_command(device), f"{source}/", f"{local}/"],
                           capture_output=True, text=True)
        if r.returncode == 0:
            return
        log(f"[capture] rsync failed ({r.stderr.strip().splitlines()[-1:] or r.returncode}); trying scp")
    shutil.rmtree(local, ignore_errors=True)  # scp -r makes `local` as the folder's copy
    _run(["scp", "-r", "-q", *device.ssh_options(), "-P", str(device.port), source, str(local)], "scp from the board", capture=True)


def copy(bundle: Path, device: Device, log=print) -> None:
    if not (Path(bundle) / "config.json").is_file():
        raise PipelineError(f"{bundle} is not a bundle; run make deploy first")
    _run(device.sh('mkdir -p "$1"', device.dest), f"ssh to {device.address}", capture=True)
    ssh_cmd = _ssh_command(device)
    if shutil.which("rsync"):
        cmd = ["rsync", "-az", "--delete", "--exclude", "model/engines/", "--exclude", ".venv/", "-e", ssh_cmd, f"{bundle}/", f"{device.address}:{device.dest}/"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode == 0:
            log(f"[push] rsync {bundle} -> {device.address}:{device.dest}")
            return
        log(f"[push] rsync failed ({r.stderr.strip().splitlines()[-1:] or r.returncode}); trying scp")
    scp = ["scp", "-r", "-q", *device.ssh_options(), "-P", str(device.port)]
    sources = [str(p) for p in sorted(Path(bundle).iterdir())]
    _run([*scp, *sources, f"{device.address}:{device.dest}/"], "scp", capture=True)
    log(f"[push] scp {bundle} -> {device.address}:{device.dest}")


# A venv of the bundle's own (run.sh uses it): current Debian and Raspberry Pi OS refuse pip into the
# system Python, and --system-site-packages keeps what the OS ships (JetPack's TensorRT and OpenCV, Picamera2).
INSTALL_SH = """cd "$1" || exit 1
[ -x .venv/bin/python ] || python3 -m venv --system-site-packages .venv || {
  echo "error: cannot make a virtual environment on the board: sudo apt install python3-venv" >&2; exit 1; }
exec .venv/bin/python -m pip install -q -r requirements.txt"""


def install(device: Device, log=print) -> None:
    log("[push] installing the bundle's requirements into the bundle's .venv on the board")
    _run(device.sh(INSTALL_SH, device.dest), "remote install (venv + pip install -r requirements.txt)", capture=True)


def start(device: Device, mode: str, source: str | None = None, extra: list[str] | None = None) -> int:
    """`foreground`: run the camera program here over ssh until it ends; `service`: install the systemd unit."""
    if mode == "service":
        _run(device.sh('cd "$1" && ./install-service.sh', device.dest), "remote service install")
        return 0
    if mode != "foreground":
        raise PipelineError(f"unknown DEVICE_START={mode!r}; use foreground or service")
    args = ["--headless", *(["--source", source] if source else []), *(extra or [])]
    return subprocess.run(device.sh('cd "$1" && shift && exec ./run.sh "$@"', device.dest, *args)).returncode
