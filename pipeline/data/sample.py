"""The embedded default data: real photos that ship offline inside scikit-image.

Only three of them have an ImageNet class: enough to show the pipeline working end to
end on a fresh machine, far too few to measure accuracy (the report says so). All 16
serve, unlabelled, as the default calibration set.
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


# Every real photograph scikit-image bundles, unlabelled: the default calibration set.
CALIBRATION_PHOTOS = (
    "astronaut.png", "brick.png", "camera.png", "chelsea.png", "clock_motion.png", "coffee.png", "coins.png",
    "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "moon.png", "motorcycle_left.png",
    "motorcycle_right.png", "retina.jpg", "rocket.jpg",
)


def _skimage_photo(name: str) -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data" / name


def calibration_folder(dest: Path) -> Path:
    """The bundled photos as an unlabelled folder under `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    for photo in CALIBRATION_PHOTOS:
        if not (dest / photo).exists():
            shutil.copyfile(_skimage_photo(photo), dest / photo)
    return dest


def sample_folder(dest: Path) -> Path:
    """Lay the photos out as an ImageFolder under `dest` (by WordNet id) and return it."""
    for photo, wnid in SAMPLE_PHOTOS.items():
        target = dest / wnid / photo
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(_skimage_photo(photo), target)
    return dest
