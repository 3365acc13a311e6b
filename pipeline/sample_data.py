"""The embedded default data set: real photos that ship offline inside scikit-image.

Only three images with an ImageNet class: enough to show the pipeline working end to
end on a fresh machine, far too few to measure accuracy. The report says so.
"""
from __future__ import annotations

import shutil
from pathlib import Path

# photo -> ImageNet WordNet id (judged by eye against WordNet's definitions)
SAMPLE_PHOTOS = {
    "chelsea.png": "n02123159",  # tiger cat: "a cat having a striped coat"
    "coffee.png": "n07920052",  # espresso
    "rocket.jpg": "n03773504",  # missile (a rocket on its launch pad)
}


def sample_folder(dest: Path) -> Path:
    """Lay the photos out as an ImageFolder under `dest` (by WordNet id) and return it."""
    import skimage

    source = Path(skimage.__file__).parent / "data"
    for photo, wnid in SAMPLE_PHOTOS.items():
        target = dest / wnid / photo
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / photo, target)
    return dest
