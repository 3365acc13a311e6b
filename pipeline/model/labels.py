"""ImageNet-1k class names and WordNet ids, from the libraries that already ship them."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def imagenet_names() -> list[str]:
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return list(_IMAGENET_CATEGORIES)


@lru_cache(maxsize=1)
def imagenet_wnids() -> list[str]:
    """The 1000 synset ids in class-index order (n01440764 = 0, tench ...)."""
    import timm

    path = Path(timm.__file__).parent / "data" / "_info" / "imagenet_synsets.txt"
    wnids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    assert len(wnids) == 1000, path
    return wnids


@lru_cache(maxsize=1)
def imagenet_aliases() -> list[list[str]]:
    """Every name a class folder may use for each ImageNet class: torchvision's name and WordNet's lemmas."""
    import timm

    path = Path(timm.__file__).parent / "data" / "_info" / "imagenet_synset_to_lemma.txt"
    lemmas = dict(line.split("\t", 1) for line in path.read_text().splitlines() if "\t" in line)
    return [[name] + [s.strip() for s in lemmas.get(wnid, "").split(",") if s.strip()]
            for name, wnid in zip(imagenet_names(), imagenet_wnids())]


def is_imagenet(labels: list[str]) -> bool:
    return len(labels) == 1000 and list(labels) == imagenet_names()
