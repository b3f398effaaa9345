"""How decoding JPEGs at half scale at most moves the answers: ``python -m loadtests.half_scale --manifest CSV``.

JPEG draft mode decodes a large JPEG at the largest reduction (1/2, 1/4, 1/8) that keeps the model's
input size. Since #16 the core holds 4:2:0 JPEGs within :data:`detector.preprocessing.HALF_SCALE_MAX_PIXELS`
at half scale and box-reduces the rest of the way for the model, so that the watermark check, which
reads such JPEGs at half scale, reads the model's decode instead of decoding the file again. This
reads every labelled file the rule changes (a 4:2:0 JPEG within the cap that draft mode would
otherwise reduce by 4 or 8) both ways, runs the exported model (ONNX Runtime, fp32) on each input,
and prints how far the answers move: ROC-AUC each way, |ΔP(ai)|, verdict and label agreement, and
the mean preprocessing CPU time each way.

    .venv/bin/python -m loadtests.half_scale --manifest /work/originals/manifest.csv   # realvsai-v1's originals
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import numpy as np
from pydantic_settings import CliApp
from sklearn.metrics import roc_auc_score

from detector.labels import AI
from detector.preprocessing import (
    HALF_SCALE_MAX_PIXELS,
    decode_image,
    half_scale_reduction,
    image_to_array,
    open_image,
)
from detector.runtimes.onnx_runtime import OnnxDetector
from loadtests.config import HalfScaleSettings

#: the two rules compared: held at half scale as shipped, and not held (draft mode reduces as far as it can)
RULES = {"half scale, then box-reduced": HALF_SCALE_MAX_PIXELS, "draft mode all the way": 0}


def changed_files(manifest: Path, input_size: int) -> list[tuple[Path, str]]:
    """The manifest's files whose decode the limit changes: 4:2:0 JPEGs within the cap that draft mode would
    otherwise reduce by 4 or 8 (read from their headers)."""
    chosen = []
    with manifest.open(newline="") as handle:
        for row in csv.DictReader(handle):
            path = manifest.parent / row["path"]
            with open_image(path) as image:
                if image.format == "JPEG" and half_scale_reduction(image, input_size) > 1:
                    chosen.append((path, row["label"]))
    return chosen


def main(argv: list[str] | None = None) -> int:
    settings = CliApp.run(HalfScaleSettings, cli_args=argv)
    for path, fix in ((settings.manifest, "pass --manifest CSV"), (settings.model, "run make export, or pass --model")):
        if not path.is_file():
            print(f"error: {path} does not exist: {fix}", file=sys.stderr)
            return 2
    detector = OnnxDetector(settings.model, threads=1)
    config = detector.preprocess_config
    files = changed_files(settings.manifest, config.input_size)
    if not files:
        print(f"no JPEG in {settings.manifest} is decoded differently by the limit", file=sys.stderr)
        return 2
    p_ai: dict[str, np.ndarray] = {}
    verdicts: dict[str, list[str]] = {}
    seconds: dict[str, float] = {}
    for rule, cap in RULES.items():
        answers, spent = [], 0.0
        for path, _ in files:
            data = path.read_bytes()
            start = time.process_time()
            decoded = decode_image(data, draft_size=config.input_size, half_scale_max_pixels=cap)
            array = image_to_array(decoded.model_image, config)
            spent += time.process_time() - start
            answers.append(detector.classify(array[None])[0])
        p_ai[rule] = np.array([answer.p_ai for answer in answers])
        verdicts[rule] = [answer.label for answer in answers]
        seconds[rule] = spent / len(files)
    is_ai = np.array([label == AI for _, label in files])
    shipped, before = RULES
    moved = np.abs(p_ai[shipped] - p_ai[before])
    print(
        f"{len(files)} JPEGs within {HALF_SCALE_MAX_PIXELS / 1e6:.1f} MP that draft mode would reduce by 4 or 8 "
        f"({int(is_ai.sum())} ai, {int((~is_ai).sum())} real)\n"
    )
    print("| decode | ROC-AUC | preprocessing CPU ms per file |\n| --- | ---: | ---: |")
    for rule in RULES:
        auc = roc_auc_score(is_ai, p_ai[rule]) if 0 < is_ai.sum() < len(files) else float("nan")
        print(f"| {rule} | {auc:.4f} | {seconds[rule] * 1e3:.2f} |")
    agree = np.mean([a == b for a, b in zip(verdicts[shipped], verdicts[before], strict=True)])
    labels_agree = np.mean((p_ai[shipped] >= 0.5) == (p_ai[before] >= 0.5))
    print(
        f"\n|ΔP(ai)| mean {moved.mean():.4f}, median {np.median(moved):.4f}, 95th percentile "
        f"{np.percentile(moved, 95):.4f}, max {moved.max():.4f}; verdicts (ai / unsure / real) agree on "
        f"{agree:.1%}, labels at P(ai) 0.5 on {labels_agree:.1%}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
