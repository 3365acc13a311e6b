"""A deploy bundle as the board sees it: config.json, labels.json and the model artifacts."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edge.dataset import ClassTable
from edge.errors import UserError
from edge.preprocess import Preprocess
from edge.runners import load_runner

BUNDLE_FORMAT = "effnet-edge-bundle/1"


@dataclass
class Bundle:
    root: Path
    config: dict
    preprocess: Preprocess
    classes: ClassTable

    @classmethod
    def load(cls, root: str | Path) -> "Bundle":
        root = Path(root)
        path = root / "config.json"
        if not path.is_file():
            raise UserError(f"{root} is not a deploy bundle (no config.json); run make deploy first or pass --bundle DIR")
        config = json.loads(path.read_text())
        if config.get("format") != BUNDLE_FORMAT:
            raise UserError(f"{path} is not a {BUNDLE_FORMAT} config; rebuild the bundle with make deploy")
        classes = ClassTable.from_dict(json.loads((root / config["classes"]).read_text()))
        return cls(root, config, Preprocess.from_dict(config["preprocess"]), classes)

    @property
    def takes_pixels(self) -> bool:
        """Whether the artifacts hold the colour order, normalisation and layout themselves (bundles before that
        have no "input" key: tensors)."""
        return self.config.get("input", "tensor") == "pixels"

    @property
    def model_input(self):
        """The board's one preprocessing: image -> what the artifacts take (`Preprocess.pixels` or the whole recipe)."""
        return self.preprocess.pixels if self.takes_pixels else self.preprocess

    def blank(self):
        """An all-zero input of the artifacts' kind, for timing."""
        return self.preprocess.blank(pixels=self.takes_pixels)

    def runner(self, which: str = "int8", threads: int | None = None):
        """The int8 (or float) artifact loaded in the bundle's runtime."""
        key = "artifact" if which == "int8" else "float_artifact"
        if not self.config.get(key):
            raise UserError(f"this bundle carries no {which} artifact")
        threads = self.config.get("threads", 0) if threads is None else threads
        runner = load_runner(self.config["runtime"], self.root / self.config[key], threads, self.config.get("precision", "f32"))
        if self.takes_pixels:
            runner.accept_pixels(self.preprocess)
        return runner

    def in_flight(self, threads: int | None = None, depth: int = 0):
        """The int8 artifact in throughput mode: `depth` inferences at once (edge.inflight)."""
        from edge.inflight import open_in_flight

        threads = self.config.get("threads", 0) if threads is None else threads
        return open_in_flight(self.config["runtime"], self.root / self.config["artifact"], threads,
                              self.config.get("precision", "f32"), depth, self.preprocess if self.takes_pixels else None)
