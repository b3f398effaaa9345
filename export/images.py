"""Which images calibrate and which evaluate the int8 model, and how they reach ONNX Runtime's calibrator.

A run folder (with the ``split.csv`` training wrote) calibrates on its *train* split and is evaluated on
its *test* split, so the images that set the int8 ranges never grade the result.  Any other folder is
searched recursively for images.  Every image goes through the core's preprocessing with the model's
own metadata (``OnnxDetector.preprocess``), exactly as the web app feeds it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from detector.preprocessing import ImageDecodeError, list_images
from detector.runtimes.onnx_runtime import INPUT_NAME
from training.data import Sample, read_manifest

log = logging.getLogger("export.quantize")

SPLIT_FILE = "split.csv"


def is_run_folder(path: Path) -> bool:
    return path.is_dir() and (path / SPLIT_FILE).is_file()


def split_images(run: Path, split: str) -> list[Sample]:
    """The images of one split of a training run, as listed in its ``split.csv``."""
    return [sample for sample in read_manifest(run / SPLIT_FILE) if sample.split == split]


def calibration_images(source: Path, limit: int, seed: int = 0) -> list[Path]:
    """Up to ``limit`` images: a run folder's train split, or every image under a folder; a seeded sample."""
    if is_run_folder(source):
        found = [image.path for image in split_images(source, "train")]
    elif source.is_dir():
        found = list_images(source)
    else:
        raise FileNotFoundError(f"no calibration folder or run folder at {source}")
    if not found:
        raise ValueError(f"no calibration images under {source}")
    if len(found) > limit:
        found = sorted(random.Random(seed).sample(found, limit))
    return found


def preprocess_all(paths: list[Path], preprocess: Callable[[Path], np.ndarray]) -> tuple[np.ndarray, list[int]]:
    """Stack the model inputs of the readable images; also return the indices of those kept."""
    arrays, kept = [], []
    for index, path in enumerate(paths):
        try:
            arrays.append(preprocess(path))
            kept.append(index)
        except (ImageDecodeError, OSError) as error:
            log.warning("skipping %s (%s)", path, error)
    if not arrays:
        raise ValueError("none of the images could be read")
    return np.stack(arrays), kept


class ImageCalibrationReader(CalibrationDataReader):
    """Feeds preprocessed images to the calibrator in batches (the exported batch axis is dynamic).

    Every batch has the same size, because the histogram calibrators (entropy, percentile) stack the
    batches' outputs into one array; the images past the last full batch are left out.
    """

    def __init__(self, inputs: np.ndarray, batch_size: int) -> None:
        batch_size = min(batch_size, len(inputs))
        usable = len(inputs) - len(inputs) % batch_size
        self.batches = [inputs[start : start + batch_size] for start in range(0, usable, batch_size)]
        self.images = usable
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.batches):
            return None
        batch = self.batches[self.position]
        self.position += 1
        return {INPUT_NAME: batch}

    def rewind(self) -> None:
        self.position = 0

    def __len__(self) -> int:
        return len(self.batches)
