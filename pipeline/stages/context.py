"""What every stage of one deploy run reads besides its inputs: the config, the model's description, the target, the
data folders, the run folder, the int8 arithmetic that judges, and the image lists drawn from DATA and TRAIN_DATA."""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

import calibration
import targets
from edge.preprocess import Preprocess, read_images
from pipeline import PipelineError
from pipeline.model import weights as hub_weights
from pipeline.config import DeployConfig
from pipeline.data.folders import check_folder, holdout_split, labelled_samples
from pipeline.model.family import get_spec
from pipeline.model.labels import is_imagenet
from pipeline.model.load import fix_same_padding, labels_for, load
from pipeline.runfolder import RunFolder
from pipeline.data.sample import sample_folder
from pipeline.scores import rows_not_among


def progress(iterable, **kw):
    return tqdm(iterable, unit="img", leave=False, dynamic_ncols=True, **kw)


class Context:
    """One deploy run's settings and surroundings. The stages' work lives in their modules (pipeline/stages/)."""

    def __init__(self, cfg: DeployConfig, log=print):
        from pipeline.train.loop import Dist

        self.cfg = cfg
        self.world = Dist()
        self.log = log if self.world.main else (lambda *_: None)
        self.spec = get_spec(cfg.model)
        self.target = targets.get_target(cfg.target)
        self.data_dir, self.data_is_sample = self._data_folder()

    @functools.cached_property
    def run(self) -> RunFolder:
        """Made on first use, after check_inputs: a refused run leaves the run folder as it was."""
        return RunFolder(self.cfg.run_dir, self.log, identity={"model": self.spec.name, "target": self.cfg.target})

    def check_inputs(self, stage: str) -> None:
        """What the stages up to `stage` will read, checked before any model work (seconds to minutes) and before
        the run folder is touched: WEIGHTS against MODEL, the folders, DATA's and TRAIN_DATA's class folders."""
        cfg = self.cfg
        if cfg.calib and cfg.calib != calibration.RANDOM:
            check_folder(cfg.calib, "CALIB")
        if stage == "calibration":
            return  # needs no model and no labels
        labels = labels_for(self.spec, cfg.weights, cfg.num_classes)  # reads WEIGHTS' tensor shapes, builds nothing
        if cfg.weights is None:
            hub_weights.ensure(self.spec)  # a hub that cannot be reached is one line now, not after the run folder is made
        trains = stage == "qat" or (cfg.quant.mode == "qat" and stage in ("validate", "report"))
        if trains and cfg.quant.qat_data == "labelled":
            self.train_samples(labels)
        if stage in ("qat", "auto", "validate", "report"):
            if self.data_is_sample and not is_imagenet(labels):
                raise PipelineError(f"no DATA given, and the embedded sample is labelled with ImageNet classes, which this "
                                    f"{len(labels)}-class model does not have: pass DATA=<a folder with one subfolder per class>")
            labelled_samples(self.data_dir, labels, "DATA", self.spec.name)

    def _data_folder(self) -> tuple[Path, bool]:
        if self.cfg.data:
            return check_folder(self.cfg.data), False
        return sample_folder(Path("runs") / "_sample_data"), True

    @property
    def preprocess(self) -> Preprocess:
        pre = self.spec.preprocess
        return pre.at_size(self.cfg.image_size) if self.cfg.image_size else pre

    @property
    def host_threads(self) -> int:
        """The board's thread count (a Pi profile's 4), never more than this host's cores: timing 4 threads
        on 2 cores measures the contention, not the model (0 = the runtime's default)."""
        return min(self.cfg.threads, os.cpu_count() or 1) if self.cfg.threads else 0

    @property
    def splits_data(self) -> bool:
        """Labelled QAT with no TRAIN_DATA trains on half of DATA and every stage validates on the other half."""
        return self.cfg.quant.mode == "qat" and self.cfg.quant.qat_data == "labelled" and not self.cfg.train_data

    @property
    def distils_on_calibration(self) -> bool:
        return self.cfg.quant.mode == "qat" and self.cfg.quant.qat_data == "calibration"

    def train_folder(self) -> Path:
        return check_folder(self.cfg.train_data, "TRAIN_DATA") if self.cfg.train_data else self.data_dir

    def train_samples(self, labels: list[str]):
        what = "TRAIN_DATA" if self.cfg.train_data else "DATA"
        samples = labelled_samples(self.train_folder(), labels, what, self.spec.name)
        return holdout_split(samples)[0] if self.splits_data else samples

    def validation_samples(self, labels: list[str], calibration_files: list[str]):
        """DATA's labelled images the int8 model is validated on: less QAT's half of DATA, and less the calibration
        images QAT distilled on (by content)."""
        samples = labelled_samples(self.data_dir, labels, "DATA", self.spec.name)
        if self.splits_data:
            samples = holdout_split(samples)[1]
        if self.distils_on_calibration:
            samples = [samples[i] for i in rows_not_among([s.path for s in samples], calibration_files)]
        return samples[: self.cfg.max_images or None]

    def validation_arrays(self, labels: list[str], calibration_files: list[str]):
        """DATA's readable validation images, preprocessed, with their labels (for the accuracy-aware search)."""
        samples = self.validation_samples(labels, calibration_files)
        xs, ys = [], []
        for s, img in read_images(progress(samples, desc="validation images"), lambda s: s.path):
            xs.append(self.preprocess(img))
            ys.append(s.label)
        if not xs:
            raise PipelineError(f"no readable labelled images in {self.data_dir}; QUANT=auto needs DATA")
        return np.stack(xs).astype(np.float32), np.asarray(ys)

    def torch_model(self, model_stage, with_labels: bool = False):
        loaded = load(self.spec, str(model_stage.path("model.pt")))
        fix_same_padding(loaded.model, self.preprocess.image_size)  # one constant Pad per conv in exported graphs
        return (loaded.model, loaded.labels) if with_labels else loaded.model
