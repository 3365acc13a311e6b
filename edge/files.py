"""Files on disk, shared by host and board: atomic writes, content hashes, artifact sizes and copies."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path


def umask() -> int:
    """The process umask, read without changing it where Linux shows it (os.umask alone must set it to read it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: Path, text: str) -> None:
    """Write a text file so readers see the old or the new content, never half of it, with the mode a plain
    open() gives (mkstemp's 0600 would hide reports from the board's other users)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o666 & ~umask())
    os.replace(tmp, path)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def artifact_size_mb(artifact: str | Path) -> float:
    """An artifact's size including its sidecar files (an OpenVINO IR's .bin)."""
    artifact = Path(artifact)
    return round(sum(p.stat().st_size for p in artifact.parent.glob(f"{artifact.stem}.*")) / 2**20, 3)


def copy_artifact(src: str | Path, out: str | Path) -> Path:
    """Copy an artifact and its sidecar files (an OpenVINO IR's .bin) to `out`'s folder and stem."""
    src, out = Path(src), Path(out)
    for part in src.parent.glob(f"{src.stem}.*"):
        shutil.copyfile(part, out.with_suffix(part.suffix))
    return out.with_suffix(src.suffix)
