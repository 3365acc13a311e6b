"""Labelled image folders (ImageFolder layout) mapped onto the model's own output indices.

A class folder may be named by the model's class index (`281/`), its class name
(`tabby/`, `tabby_cat`), or an ImageNet WordNet id (`n02123045/`, the layout of
ImageNet val and Imagenette), so a 1000-class model is scored correctly on a folder
holding only some of its classes.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline import PipelineError
from pipeline.labels import imagenet_aliases, imagenet_wnids, is_imagenet

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # index in the model's output; -1 when the folder is unlabelled


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


def class_index(folder_name: str, aliases: list[list[str]], wnids: list[str] | None) -> int | None:
    """Map one class-folder name onto a model output index, or None.

    `aliases[i]` lists the names class i may go by (ImageNet: "tabby", "tabby cat").
    """
    if folder_name.isdigit():
        i = int(folder_name)
        return i if i < len(aliases) else None
    if wnids and folder_name in wnids:
        return wnids.index(folder_name)
    wanted = _norm(folder_name)
    for i, names in enumerate(aliases):
        if any(wanted == _norm(n) for n in names):
            return i
    return None


def check_folder(folder: str | Path, what: str = "DATA") -> Path:
    folder = Path(folder)
    if not folder.exists():
        raise PipelineError(f"{what} folder {folder} does not exist; pass {what}=path/to/images")
    if not folder.is_dir():
        raise PipelineError(f"{what}={folder} is not a folder; pass a folder of images (one subfolder per class)")
    if not list_images(folder):
        raise PipelineError(
            f"{what} folder {folder} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}); check the path"
        )
    return folder


def labelled_samples(folder: str | Path, labels: list[str]) -> list[Sample]:
    """Every image under `folder`, labelled by its class folder mapped onto the model's outputs."""
    folder = check_folder(folder)
    if is_imagenet(labels):
        aliases, wnids = imagenet_aliases(), imagenet_wnids()
    else:
        aliases, wnids = [[label] for label in labels], None
    class_dirs = sorted(d for d in folder.iterdir() if d.is_dir() and list_images(d))
    if not class_dirs:
        raise PipelineError(f"DATA folder {folder} has no class subfolders; use ImageFolder layout: DATA/<class>/<image>")
    mapping = {d.name: class_index(d.name, aliases, wnids) for d in class_dirs}
    unmapped = [n for n, i in mapping.items() if i is None]
    if unmapped and all(i is None for i in mapping.values()) and len(class_dirs) == len(labels):
        # A custom model whose class names we do not know: ImageFolder's sorted order is its index order.
        mapping = {d.name: i for i, d in enumerate(class_dirs)}
        unmapped = []
    if unmapped:
        raise PipelineError(
            f"class folders {unmapped[:5]} match no class of the model (by index 0-{len(labels) - 1}, name"
            f"{', or WordNet id' if wnids else ''}); rename them or check MODEL/WEIGHTS"
        )
    return [Sample(p, mapping[d.name]) for d in class_dirs for p in list_images(d)]


def fingerprint(paths: list[Path]) -> str:
    """A cheap content key for a set of files: names, sizes and modification times."""
    h = hashlib.sha256()
    for p in sorted(paths):
        st = p.stat()
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]
