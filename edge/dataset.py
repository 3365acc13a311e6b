"""Labelled image folders (ImageFolder layout) mapped onto a model's output indices.

A class folder may be named by the model's class index (`281/`), its class name or a
synonym (`tabby/`, `tabby_cat/`), or an ImageNet WordNet id (`n02123045/`, the layout of
ImageNet val and Imagenette), so a 1000-class model is scored correctly on a folder holding
only some of its classes. Device side: used by the host and by `run.sh validate` alike.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from edge.errors import UserError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # index in the model's output


@dataclass(frozen=True)
class ClassTable:
    """The model's classes: a display name, the names a folder may use, and WordNet ids if any."""

    names: list[str]
    aliases: list[list[str]]
    wnids: list[str] | None = None

    @classmethod
    def plain(cls, names: list[str]) -> "ClassTable":
        return cls(list(names), [[n] for n in names], None)

    def to_dict(self) -> dict:
        return {"names": self.names, "aliases": self.aliases, "wnids": self.wnids}

    @classmethod
    def from_dict(cls, d: dict) -> "ClassTable":
        return cls(list(d["names"]), [list(a) for a in d["aliases"]], d.get("wnids"))

    def index_of(self, folder_name: str) -> int | None:
        """Map one class-folder name onto an output index, or None."""
        if folder_name.isdigit():
            i = int(folder_name)
            return i if i < len(self.names) else None
        if self.wnids and folder_name in self.wnids:
            return self.wnids.index(folder_name)
        wanted = _norm(folder_name)
        for i, names in enumerate(self.aliases):
            if any(wanted == _norm(n) for n in names):
                return i
        return None


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def check_folder(folder: str | Path, what: str = "DATA") -> Path:
    folder = Path(folder)
    if not folder.exists():
        raise UserError(f"{what} folder {folder} does not exist; pass {what}=path/to/images")
    if not folder.is_dir():
        raise UserError(f"{what}={folder} is not a folder; pass a folder of images (one subfolder per class)")
    if not list_images(folder):
        raise UserError(f"{what} folder {folder} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}); check the path")
    return folder


def labelled_samples(folder: str | Path, classes: ClassTable) -> list[Sample]:
    """Every image under `folder`, labelled by its class folder mapped onto the model's outputs."""
    folder = check_folder(folder)
    class_dirs = sorted(d for d in folder.iterdir() if d.is_dir() and list_images(d))
    if not class_dirs:
        raise UserError(f"DATA folder {folder} has no class subfolders; use ImageFolder layout: DATA/<class>/<image>")
    mapping = {d.name: classes.index_of(d.name) for d in class_dirs}
    unmapped = [n for n, i in mapping.items() if i is None]
    if unmapped and all(i is None for i in mapping.values()) and len(class_dirs) == len(classes.names):
        # A custom model whose class names we do not know: ImageFolder's sorted order is its index order.
        mapping = {d.name: i for i, d in enumerate(class_dirs)}
        unmapped = []
    if unmapped:
        raise UserError(
            f"class folders {unmapped[:5]} match no class of the model (by index 0-{len(classes.names) - 1}, name"
            f"{', or WordNet id' if classes.wnids else ''}); rename them or check MODEL/WEIGHTS"
        )
    return [Sample(p, mapping[d.name]) for d in class_dirs for p in list_images(d)]
