"""Finding the images, splitting them, and feeding them to the model through the core's preprocessing.

Accepted layouts:

* ``data/ai/*``, ``data/real/*``: split here, stratified and seeded;
* ``data/train/{ai,real}/*``, ``data/val/...``, ``data/test/...``: the given split is kept;
* a CSV manifest with columns ``path,label`` (and optionally ``split``), paths relative to it.

The split used is written to the run folder as ``split.csv`` so that evaluation, and anyone
re-running it, sees exactly the same images.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset, default_collate

from detector.labels import CLASSES, class_index
from detector.preprocessing import ImageDecodeError, PreprocessConfig, image_to_array, list_images, load_image

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Sample:
    path: Path
    label: str
    split: str | None = None
    #: where the image came from (a manifest's ``source`` column); whole sources are held out by
    #: :func:`split_by_source`, so that validation and test measure images from unseen origins
    source: str | None = None
    #: the generator (or camera/origin) named by the manifest, for per-generator reports
    generator: str | None = None

    @property
    def group(self) -> str:
        """The source, or the image's folder when no manifest named one (``ai/<source>/x.jpg`` layouts)."""
        return self.source or self.path.parent.name


def discover(source: Path) -> list[Sample]:
    """List the labelled images of a folder or CSV manifest, in a stable (sorted) order."""
    source = Path(source)
    if source.is_file():
        return read_manifest(source)
    if not source.is_dir():
        raise FileNotFoundError(f"no data folder or manifest at {source}")
    presplit = [name for name in SPLITS if (source / name).is_dir()]
    if presplit:
        missing = sorted(set(SPLITS) - set(presplit))
        if missing:
            raise ValueError(f"{source} has {presplit} but not {missing}: give all of train/ val/ test/ or none")
        roots = [(source / split, split) for split in SPLITS]
    else:
        roots = [(source, None)]
    samples: list[Sample] = []
    for root, split in roots:
        for label in CLASSES:
            samples += [Sample(path, label, split) for path in list_images(root / label)]
    if not samples:
        raise ValueError(f"no images found under {source}; expected subfolders {list(CLASSES)}")
    return samples


def read_manifest(manifest: Path) -> list[Sample]:
    """Read ``path,label[,split]`` rows; relative paths are taken from the manifest's folder."""
    samples = []
    with manifest.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"path", "label"} <= set(reader.fieldnames):
            raise ValueError(f"{manifest} must have a header with columns path,label")
        for line, row in enumerate(reader, start=2):
            class_index(row["label"])  # validates the label
            path = Path(row["path"])
            split = row.get("split") or None
            if split is not None and split not in SPLITS:
                raise ValueError(f"{manifest}:{line}: split must be one of {SPLITS}, not {split!r}")
            samples.append(
                Sample(
                    path if path.is_absolute() else manifest.parent / path,
                    row["label"],
                    split,
                    source=row.get("source") or None,
                    generator=row.get("generator") or None,
                )
            )
    return sorted(samples, key=lambda s: str(s.path))


def write_manifest(samples: Iterable[Sample], destination: Path) -> None:
    with destination.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split", "source", "generator"])
        for sample in samples:
            writer.writerow(
                [
                    str(sample.path.resolve()),
                    sample.label,
                    sample.split or "",
                    sample.source or "",
                    sample.generator or "",
                ]
            )


def split_samples(samples: Sequence[Sample], val_fraction: float, test_fraction: float, seed: int) -> list[Sample]:
    """Assign train/val/test, stratified by label and reproducible for a seed; keeps a given split."""
    if all(s.split is not None for s in samples):
        return list(samples)
    ordered = sorted(samples, key=lambda s: str(s.path))
    labels = [s.label for s in ordered]
    counts = Counter(labels)
    if min(counts.values()) < 3 or len(counts) < 2:
        raise ValueError(f"need at least 3 images of each class to split, found {dict(counts)}")
    indices = np.arange(len(ordered))
    rest, test = train_test_split(indices, test_size=test_fraction, stratify=labels, random_state=seed)
    train, val = train_test_split(
        rest,
        test_size=val_fraction / (1 - test_fraction),
        stratify=[labels[i] for i in rest],
        random_state=seed,
    )
    split_of = {int(i): name for name, part in (("train", train), ("val", val), ("test", test)) for i in part}
    return [replace(s, split=split_of[i]) for i, s in enumerate(ordered)]


def split_by_source(
    samples: Sequence[Sample],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    holdout: Sequence[str] = (),
) -> list[Sample]:
    """Assign whole sources to train, val or test, so that val and test hold only unseen sources.

    A model scored on a random split is scored on the sources it trained on, and learns what tells
    one source from another (subject, style, a site's processing) as readily as what generation
    leaves behind; only sources never seen in training say how it does on a new one.  The test
    sources are ``holdout`` when given, else drawn at random (seeded) until each label has about
    ``test_fraction`` of its images there; the validation sources are drawn the same way from the
    rest, and calibration is fitted on them.
    """
    if all(s.split is not None for s in samples):
        return list(samples)
    ordered = sorted(samples, key=lambda s: str(s.path))
    groups = sorted({s.group for s in ordered})
    unknown = sorted(set(holdout) - set(groups))
    if unknown:
        raise ValueError(f"--holdout-sources names sources not in the data: {unknown}; known sources: {groups}")
    rng = np.random.default_rng(seed)
    remaining = [groups[i] for i in rng.permutation(len(groups))]
    if holdout:
        test = set(holdout)
        remaining = [g for g in remaining if g not in test]
    else:
        test = draw_groups(ordered, remaining, test_fraction)
        remaining = [g for g in remaining if g not in test]
    val = draw_groups(ordered, remaining, val_fraction)
    split_of = {g: ("test" if g in test else "val" if g in val else "train") for g in groups}
    result = [replace(s, split=split_of[s.group]) for s in ordered]
    for name in SPLITS:
        labels = {s.label for s in result if s.split == name}
        if labels != set(CLASSES):
            raise ValueError(
                f"splitting by source left the {name} split with labels {sorted(labels)}: "
                f"it needs sources of both {list(CLASSES)} (more sources, or other --holdout-sources)"
            )
    return result


def draw_groups(samples: Sequence[Sample], candidates: Sequence[str], fraction: float) -> set[str]:
    """Take groups in the given order while a label they hold still has fewer than ``fraction`` of its images."""
    totals = Counter(s.label for s in samples)
    per_group: dict[str, Counter[str]] = {}
    for s in samples:
        per_group.setdefault(s.group, Counter())[s.label] += 1
    taken: set[str] = set()
    have: Counter[str] = Counter()
    for group in candidates:
        wanting = [label for label, n in per_group[group].items() if have[label] < fraction * totals[label]]
        if wanting:
            taken.add(group)
            have.update(per_group[group])
        if all(have[label] >= fraction * totals[label] for label in totals):
            break
    return taken


def source_weights(samples: Sequence[Sample]) -> list[float]:
    """Sampling weights giving every (source, label) group the same total weight.

    With uniform sampling a 600-image source counts 100 times a 6-image one, so memorising the big
    sources pays; weighting groups equally makes the small, varied sources count as much.
    """
    counts = Counter((s.group, s.label) for s in samples)
    return [1.0 / counts[(s.group, s.label)] for s in samples]


def fingerprint(samples: Iterable[Sample]) -> str:
    """SHA-256 over each image's path (relative to the common folder), label, split, size and bytes' hash.

    It identifies the exact data a model saw; hashing the bytes costs one read of the data set,
    which is small next to one training epoch.
    """
    samples = sorted(samples, key=lambda s: str(s.path))
    paths = [s.path.resolve() for s in samples]
    common = Path(os.path.commonpath(paths)) if paths else Path()
    digest = hashlib.sha256()
    for sample, path in zip(samples, paths, strict=True):
        content = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"
        digest.update(f"{path.relative_to(common)}\t{sample.label}\t{sample.split}\t{content}\n".encode())
    return digest.hexdigest()


def check_readable(samples: Sequence[Sample]) -> tuple[list[Sample], list[dict[str, str]]]:
    """Keep the samples whose header Pillow can read; report the others instead of failing on them."""
    good, skipped = [], []
    for sample in samples:
        try:
            with Image.open(sample.path) as image:
                image.size  # noqa: B018 - reading the header is the check
            good.append(sample)
        except Exception as error:  # noqa: BLE001 - any unreadable file is skipped and reported
            skipped.append(
                {"path": str(sample.path), "label": sample.label, "error": f"{type(error).__name__}: {error}"}
            )
    for entry in skipped:
        log.warning("skipping unreadable image %s (%s)", entry["path"], entry["error"])
    return good, skipped


Augmentation = Callable[[Image.Image], Image.Image]


class ImageDataset(Dataset):
    """Samples through the core's preprocessing; an image that fails to decode yields ``None``.

    :func:`collate_skipping_bad` drops those ``None`` items, so one corrupt file costs one
    image, not the run.
    """

    def __init__(self, samples: Sequence[Sample], config: PreprocessConfig, augment: Augmentation | None = None):
        self.samples = list(samples)
        self.config = config
        self.augment = augment
        self.targets = [class_index(s.label) for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int] | None:
        sample = self.samples[index]
        try:
            image = load_image(sample.path, draft_size=self.config.input_size)
        except (ImageDecodeError, OSError) as error:
            log.warning("skipping %s: %s", sample.path, error)
            return None
        if self.augment is not None:
            image = self.augment(image)
        return image_to_array(image, self.config), self.targets[index]


def collate_skipping_bad(batch: list[tuple[np.ndarray, int] | None]) -> tuple[torch.Tensor, torch.Tensor]:
    good = [item for item in batch if item is not None]
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long)
    return default_collate(good)
