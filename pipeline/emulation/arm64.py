"""An emulated arm64 board: a Debian arm64 root filesystem run under QEMU user mode, for `make test-arm` and for the
gate judging a Raspberry Pi's int8 on its own emulated CPU (pipeline.emulation, board.emulate=on).

It proves the board side on Arm binaries: the bundle installs on a clean Debian arm64 from aarch64
wheels, and LiteRT/XNNPACK, ONNX Runtime, OpenVINO and OpenCV built for Arm compute the decisions the
host computes. It proves nothing about latency: emulated timings mean nothing.

Set-up, cached under $EFFNET_ARM_CACHE (default ~/.cache/effnet-edge/arm64):
- QEMU >= 8. Debian 12's own 7.2 miscomputes XNNPACK's int8 kernels (every image came out as one class).
- Its binfmt_misc entry with the F flag, so a chroot runs arm64 programs without a QEMU inside it.
- A Debian bookworm arm64 root (debootstrap, about 5 minutes, 323 MB).
- A venv per requirements list, from aarch64 wheels that the host's pip downloads (the board's pip
  sees no network config of the host's).
A step that needs root or the network and cannot run raises Unavailable with one line naming the fix.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from edge.errors import UserError

QEMU_MIN = 8
BACKPORTS = "deb http://deb.debian.org/debian bookworm-backports main"
BINFMT = Path("/proc/sys/fs/binfmt_misc")
SUITE, MIRROR = "bookworm", "http://deb.debian.org/debian"
BOARD_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
# Wheels the board's Python (3.11 in bookworm) can install: every manylinux glibc up to bookworm's 2.36.
PLATFORMS = ["manylinux2014_aarch64", "linux_aarch64", *(f"manylinux_2_{m}_aarch64" for m in range(17, 37))]


class Unavailable(UserError):
    """The emulated board cannot be set up here; the message is one line naming the fix."""


def cache_dir() -> Path:
    return Path(os.environ.get("EFFNET_ARM_CACHE", Path.home() / ".cache" / "effnet-edge" / "arm64"))


def _root(step: str) -> None:
    if os.geteuid() != 0:
        raise Unavailable(f"{step} needs root (debootstrap, chroot, binfmt_misc): run it as root")


def _sh(argv: list[str], what: str, log: Path | None = None, **kw) -> None:
    """Run a set-up step; a failure is one line with the log's last line."""
    out = subprocess.run(argv, capture_output=True, text=True, **kw)
    if log is not None:
        log.write_text(out.stdout + out.stderr)
    if out.returncode != 0:
        last = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
        raise Unavailable(f"{what} failed ({last[0]}){f'; log: {log}' if log else ''}")


def qemu_version(qemu: str = "qemu-aarch64-static") -> tuple[int, int] | None:
    path = shutil.which(qemu)
    if path is None:
        return None
    m = re.search(r"version (\d+)\.(\d+)", subprocess.run([path, "--version"], capture_output=True, text=True).stdout)
    return (int(m.group(1)), int(m.group(2))) if m else None


def ensure_qemu() -> str:
    """qemu-aarch64-static >= QEMU_MIN, from bookworm-backports on Debian 12 (as root), else one line."""
    version = qemu_version()
    if version and version[0] >= QEMU_MIN:
        return shutil.which("qemu-aarch64-static")
    found = f"found {version[0]}.{version[1]}" if version else "none installed"
    fix = (f"echo '{BACKPORTS}' > /etc/apt/sources.list.d/backports.list && apt-get update "
           "&& apt-get install -t bookworm-backports qemu-user-static")
    if os.geteuid() != 0 or not shutil.which("apt-get") or "bookworm" not in Path("/etc/os-release").read_text():
        raise Unavailable(f"QEMU >= {QEMU_MIN} is needed for arm64 emulation ({found}); on Debian 12 as root: {fix}")
    Path("/etc/apt/sources.list.d/backports.list").write_text(BACKPORTS + "\n")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _sh(["apt-get", "update", "-qq"], "apt-get update (for bookworm-backports' QEMU)", env=env)
    _sh(["apt-get", "install", "-y", "-qq", "-t", "bookworm-backports", "qemu-user-static", "debootstrap"],
        "apt-get install qemu-user-static from bookworm-backports", env=env)
    return ensure_qemu()


def ensure_binfmt(qemu: str) -> None:
    """arm64 ELF files run through `qemu`, opened at registration (flag F) so chroots need no copy of it."""
    entry = BINFMT / "qemu-aarch64"
    if entry.exists():
        text = entry.read_text()
        interp = re.search(r"interpreter (\S+)", text).group(1)
        flags = re.search(r"flags: (\S*)", text)
        if "enabled" in text and flags and "F" in flags.group(1) and Path(interp).resolve() == Path(qemu).resolve():
            return
    _root("registering QEMU with binfmt_misc")
    if not (BINFMT / "register").exists():
        _sh(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], "mounting binfmt_misc")
    if entry.exists():
        entry.write_text("-1")  # an older QEMU's entry (Debian 12's qemu-user-binfmt): replace it
    conf = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
    line = conf.read_text().strip() if conf.exists() else (
        r":qemu-aarch64:M::\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:"
        r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:" + qemu + ":OPF")
    (BINFMT / "register").write_text(line)


def ensure_rootfs() -> Path:
    """A Debian arm64 root with Python, made once by debootstrap (written aside, renamed when complete)."""
    root = cache_dir() / "rootfs"
    if (root / ".effnet-complete").exists():
        return root
    _root("making the arm64 root filesystem")
    if not shutil.which("debootstrap"):
        _sh(["apt-get", "install", "-y", "-qq", "debootstrap"], "apt-get install debootstrap")
    partial = cache_dir() / "rootfs.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    print(f"arm64: debootstrap {SUITE} into {partial} (about 5 minutes)", file=sys.stderr)
    _sh(["debootstrap", "--arch=arm64", "--variant=minbase", "--include=python3,python3-venv,python3-pip", SUITE,
         str(partial), MIRROR], f"debootstrap of Debian {SUITE} arm64 from {MIRROR}", cache_dir() / "debootstrap.log")
    shutil.rmtree(root, ignore_errors=True)
    partial.rename(root)
    (root / ".effnet-complete").touch()
    return root


def download_wheels(requirements: list[str], dest: Path) -> Path:
    """aarch64 CPython 3.11 wheels of `requirements` (and what they need), fetched by the host's pip."""
    if (dest / ".complete").exists():
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    _sh([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", *platforms, "--python-version", "3.11",
         "--implementation", "cp", "--abi", "cp311", "--abi", "abi3", "--abi", "none", "-d", str(dest), *requirements],
        f"pip download of aarch64 wheels for {' '.join(requirements)}", cache_dir() / "pip-download.log")
    (dest / ".complete").touch()
    return dest


class Board:
    """The arm64 root run under QEMU as one CPU model (QEMU_CPU), with /proc, /dev and (normally) /sys."""

    def __init__(self, root: Path, cpu: str, binds: dict[Path, str] | None = None):
        self.root, self.cpu, self.binds = root, cpu, dict(binds or {})

    def run(self, argv: list[str], cwd: str = "/", sys_fs: bool = True, timeout: float = 1800) -> subprocess.CompletedProcess:
        """`argv` inside the board, in a private mount namespace (its mounts vanish with it), with a clean
        environment: nothing of the host's (pip config, PYTHONPATH) leaks in."""
        outer, env = self.command(argv, cwd, sys_fs)
        return subprocess.run(outer, capture_output=True, text=True, env=env, timeout=timeout)

    def command(self, argv: list[str], cwd: str = "/", sys_fs: bool = True, env: dict | None = None) -> tuple[list[str], dict]:
        """The host command line and environment that run `argv` inside the board (see run); `env` adds variables."""
        mounts = ['mount -t proc proc "$R/proc"', 'mount --rbind /dev "$R/dev"']
        if sys_fs:  # without /sys, LiteRT cannot read the CPU and silently runs without XNNPACK
            mounts.append('mount --rbind /sys "$R/sys"')
        for host, guest in self.binds.items():
            mounts.append(f'mkdir -p "$R{guest}" && mount --bind "{host}" "$R{guest}"')
        script = " && ".join(mounts) + ' && cd / && exec chroot "$R" /bin/sh -c \'cd "$0" && exec "$@"\' "$0" "$@"'
        env = {"PATH": BOARD_PATH, "HOME": "/root", "LANG": "C.UTF-8", "QEMU_CPU": self.cpu, "R": str(self.root), **(env or {})}
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, cwd, *argv], env

    def check(self, argv: list[str], **kw) -> str:
        out = self.run(argv, **kw)
        if out.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} on emulated {self.cpu} exited {out.returncode}:\n{out.stderr[-3000:]}")
        return out.stdout


def ensure_venv(root: Path, requirements: list[str]) -> str:
    """The board's venv for `requirements` (keyed by them), installed offline from downloaded aarch64 wheels."""
    key = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:10]
    venv = f"/opt/bundle-{key}"
    if (root / venv.lstrip("/") / ".complete").exists():
        return f"{venv}/bin/python"
    wheels = download_wheels(requirements, cache_dir() / f"wheels-{key}")
    board = Board(root, "cortex-a72", {wheels: "/wheels"})
    print(f"arm64: installing {' '.join(requirements)} in {venv} (emulated pip: a few minutes)", file=sys.stderr)
    board.check(["/bin/sh", "-c", f"rm -rf {venv} && python3 -m venv {venv} && {venv}/bin/pip install -q --no-index "
                 f"--find-links /wheels {' '.join(repr(r) for r in requirements)} && touch {venv}/.complete"])
    return f"{venv}/bin/python"


def prepare(requirements: list[str]) -> tuple[Path, str]:
    """Everything up to a board venv with `requirements`: (root, the venv's python inside it)."""
    if sys.platform != "linux":
        raise Unavailable("arm64 emulation needs Linux (QEMU user mode, binfmt_misc, chroot)")
    ensure_binfmt(ensure_qemu())
    root = ensure_rootfs()
    return root, ensure_venv(root, requirements)


def requirements_of(bundle: Path) -> list[str]:
    """The bundle's requirements.txt lines, without comments."""
    lines = (l.split("#")[0].strip() for l in (bundle / "requirements.txt").read_text().splitlines())
    return [l for l in lines if l]


def check_can_prepare() -> None:
    """One line naming the fix where the arm64 board cannot be set up here (before any model work)."""
    if sys.platform != "linux":
        raise Unavailable("arm64 emulation needs Linux (QEMU user mode, binfmt_misc, chroot)")
    if (cache_dir() / "rootfs" / ".effnet-complete").exists() and os.geteuid() == 0:
        return
    _root("judging int8 on an emulated Arm board")


def launcher(cpu: str, artifact: Path, requirements: list[str]) -> tuple[list[str], dict, str]:
    """How to start the board's Python inside the arm64 board as `cpu` (set up on first use: minutes), with this
    project's own edge/ code and `artifact` in view: (command, environment, the artifact's path there)."""
    root, python = prepare([r for r in (line.split("#")[0].strip() for line in requirements) if r])  # as requirements.txt
    code = Path(__file__).resolve().parents[2]  # holds edge/
    artifact = Path(artifact).resolve()
    board = Board(root, cpu, {code: "/effnet/code", artifact.parent: "/effnet/artifact"})
    argv, env = board.command([python], env={"PYTHONPATH": "/effnet/code"})
    return argv, env, f"/effnet/artifact/{artifact.name}"
