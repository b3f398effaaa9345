"""How well do file properties alone predict the label?  ``python -m training.shortcuts --data MANIFEST``.

A data set in which AI images are PNGs of 1024 px and photos are JPEGs of 4000 px can be "solved"
without looking at a single pixel, and a network will find that shortcut first.  This fits simple
classifiers on what a file says about itself (width, height, aspect, bytes per pixel, JPEG quality
and chroma subsampling) and on its mean colour and contrast, and reports their balanced accuracy
both on a random split and on sources never seen in training (group k-fold over sources, as
``training.crossval``).  Near 0.5 means the property carries no usable hint of the label.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, JpegImagePlugin
from pydantic import Field
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from detector.labels import AI
from detector.settings import run_cli, tool_config
from training.config import _Settings
from training.data import Sample, discover

FILE_FEATURES = ("width", "height", "aspect", "bytes_per_pixel", "jpeg_quality", "chroma_subsampling")
COLOUR_FEATURES = ("mean_r", "mean_g", "mean_b", "std_luma")


class ShortcutSettings(_Settings):
    model_config = tool_config(prog="python -m training.shortcuts")

    data: Path = Field(description="folder with ai/ and real/, or a CSV manifest (with a source column)")
    folds: int = Field(5, ge=2, description="folds of the random and of the source-grouped cross-validation")
    seed: int = 42
    output: Path | None = Field(None, description="write the figures here as JSON")


def _jpeg_quality(image: Image.Image) -> float:
    """The mean of the luma quantisation table (1 at quality 100, about 5 at 85, larger when lower); 0 if not JPEG."""
    tables = getattr(image, "quantization", None)
    return float(np.mean(tables[0])) if tables else 0.0


def file_features(sample: Sample) -> list[float]:
    with Image.open(sample.path) as image:
        width, height = image.size
        quality = _jpeg_quality(image)
        # 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0; -1 when not a JPEG
        subsampling = float(JpegImagePlugin.get_sampling(image)) if image.format == "JPEG" else -1.0
        image.draft("RGB", (64, 64))
        pixels = np.asarray(image.convert("RGB").resize((64, 64)), dtype=np.float32) / 255.0
    luma = pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    size = sample.path.stat().st_size
    return [
        width,
        height,
        width / height,
        size / (width * height),
        quality,
        subsampling,
        *pixels.reshape(-1, 3).mean(0).tolist(),
        float(luma.std()),
    ]


def evaluate_shortcuts(settings: ShortcutSettings) -> dict[str, dict[str, float]]:
    samples = discover(settings.data)
    features = np.array([file_features(s) for s in tqdm(samples, desc="reading files", unit="file")])
    labels = np.array([s.label == AI for s in samples]).astype(int)
    groups = np.array([s.group for s in samples])
    file_columns = list(range(len(FILE_FEATURES)))
    models = {
        "logistic regression": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
        "gradient boosting": lambda: HistGradientBoostingClassifier(random_state=settings.seed),
    }
    views = {
        "file (size, aspect, bytes/pixel, JPEG quality, chroma)": file_columns,
        "mean colour and contrast": list(range(len(FILE_FEATURES), features.shape[1])),
        "all of them": list(range(features.shape[1])),
    }
    random_folds = StratifiedKFold(settings.folds, shuffle=True, random_state=settings.seed)
    source_folds = list(
        StratifiedGroupKFold(settings.folds, shuffle=True, random_state=settings.seed).split(features, labels, groups)
    )
    results: dict[str, dict[str, float]] = {}
    for view, columns in views.items():
        for model_name, make in models.items():
            x = features[:, columns]
            row = {}
            for split_name, folds in (("random split", random_folds), ("unseen sources", source_folds)):
                predicted = cross_val_predict(make(), x, labels, cv=folds)
                row[split_name] = float(balanced_accuracy_score(labels, predicted))
            results[f"{view} · {model_name}"] = row
    return results


def format_results(results: dict[str, dict[str, float]]) -> str:
    lines = [
        "| properties · classifier | balanced acc., random split | balanced acc., unseen sources |",
        "| --- | ---: | ---: |",
    ]
    for name, row in results.items():
        lines.append(f"| {name} | {row['random split']:.3f} | {row['unseen sources']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    return run_cli(ShortcutSettings, _evaluate_and_report, argv)


def _evaluate_and_report(settings: ShortcutSettings) -> None:
    results = evaluate_shortcuts(settings)
    print(format_results(results))
    if settings.output is not None:
        settings.output.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
