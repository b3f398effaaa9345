"""What a heatmap costs on the ONNX path: ``python -m loadtests.heatmap_cost --model model_store/detector.onnx``.

The web app's own work per image (:meth:`serving.backends.OnnxBackend._predict`: decode, preprocess,
forward pass, and with ``explain`` the class activation map and its PNG overlay), timed without and with
``explain`` on the same photos, with the web app's thread count (1 per forward pass); then its parts:
the forward pass asking for the logits alone or for the logits and the map, and drawing the overlay
(:func:`detector.heatmap.heatmap_data_uri` at :data:`serving.backends.HEATMAP_SIDE`). The target is at
most 10 % more time per image. The model must have the ``cam`` output (exported since heatmaps exist).

The runs compared are interleaved, round after round, and each figure is its fastest round: on a busy
machine both sides of a comparison meet the same disturbance, and the fastest round is the least disturbed.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import Field

from detector.heatmap import HEATMAP_SIDE, heatmap_data_uri, overlay_size
from detector.settings import ToolSettings, run_cli, tool_config
from loadtests.images import ensure_images
from serving.backends import OnnxBackend
from serving.config import ServeSettings

#: the target: a heatmap may add at most this share to the time per image
TARGET = 0.10


@dataclass
class Cost:
    """Milliseconds per image at one batch size, without and with the heatmap."""

    batch_size: int
    #: the web app's work per image (decode + preprocess + forward pass), and with explain (+ map + PNG)
    predict_ms: float
    explain_ms: float
    #: the forward pass alone: logits only, and logits with the map
    forward_ms: float
    forward_cam_ms: float
    #: drawing one overlay PNG from its map
    png_ms: float

    @property
    def extra(self) -> float:
        """The heatmap's extra share of the web app's time per image."""
        return self.explain_ms / self.predict_ms - 1.0

    @property
    def extra_over_forward(self) -> float:
        """Its extra share of the forward pass alone: the bound for images that cost nothing to decode."""
        return (self.forward_cam_ms + self.png_ms) / self.forward_ms - 1.0


def fastest_ms(runs: dict[str, Callable[[], object]], items: int, rounds: int, min_seconds: float) -> dict[str, float]:
    """Milliseconds per item of each run: its fastest of ``rounds`` rounds, each running every run in turn."""
    for run in runs.values():
        run()  # warm-up: first calls allocate memory and pick kernels
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):
        for name, run in runs.items():
            calls, started = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - started) < min_seconds or calls < 2:
                run()
                calls += 1
            best[name] = min(best[name], 1000.0 * elapsed / (calls * items))
    return best


def measure(
    model: Path, images: list[bytes], batch_sizes: tuple[int, ...] = (1, 8), min_seconds: float = 0.5, rounds: int = 7
) -> list[Cost]:
    """Each batch size's :class:`Cost` (:func:`fastest_ms` of ``rounds`` rounds of ``min_seconds``)."""
    backend = OnnxBackend(ServeSettings(model=model, threads=1))
    detector = backend.detector
    if not detector.has_cam:
        raise SystemExit(f"{model} has no heatmap output: export it again with `make export`")
    return [_cost(backend, images, size, rounds, min_seconds) for size in batch_sizes]


def _cost(backend: OnnxBackend, images: list[bytes], size: int, rounds: int, min_seconds: float) -> Cost:
    detector = backend.detector
    files = [images[i % len(images)] for i in range(size)]
    batch = np.stack([detector.preprocess(data) for data in files])
    cam = detector.explain(batch[:1])[1][0]
    runs: dict[str, Callable[[], object]] = {
        "predict_ms": lambda: backend._predict(files),
        "explain_ms": lambda: backend._predict(files, explain=True),
        "forward_ms": lambda: detector.classify(batch),
        "forward_cam_ms": lambda: detector.explain(batch),
    }
    figures = fastest_ms(runs, size, rounds, min_seconds)
    png = fastest_ms({"png_ms": lambda: heatmap_data_uri(cam, overlay_size((4, 3)))}, 1, rounds, min_seconds)
    return Cost(batch_size=size, **figures, **png)


def table(costs: list[Cost]) -> str:
    lines = [
        f"ms per image, ONNX Runtime, 1 thread; overlay {HEATMAP_SIDE} px on its longer side; target +{TARGET:.0%}",
        "| batch | /predict work | with explain | extra | forward (logits) | forward (logits + map) | overlay PNG "
        "| extra over the forward pass |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in costs:
        lines.append(
            f"| {c.batch_size} | {c.predict_ms:.2f} | {c.explain_ms:.2f} | {c.extra:+.1%} | {c.forward_ms:.2f} "
            f"| {c.forward_cam_ms:.2f} | {c.png_ms:.2f} | {c.extra_over_forward:+.1%} |"
        )
    return "\n".join(lines)


class HeatmapCostSettings(ToolSettings):
    """The model and photos measured, and how long."""

    model_config = tool_config("DETECTOR_HEATMAP_COST_", "python -m loadtests.heatmap_cost")

    model: Path = Field(Path("model_store/detector.onnx"), description="an exported .onnx (with the cam output)")
    images: Path | None = Field(None, description="a folder of photos (default: 8 generated 640x480 to 12 MP)")
    min_seconds: float = Field(0.5, gt=0, description="least time of each run in a round")
    rounds: int = Field(7, ge=1, description="rounds per figure (the fastest is shown)")


def run(settings: HeatmapCostSettings) -> int:
    """Print the table; exit 1 when a figure misses the target."""
    with tempfile.TemporaryDirectory() as scratch:
        paths = ensure_images(settings.images or Path(scratch), 8)
        images = [path.read_bytes() for path in paths]
    costs = measure(settings.model, images, min_seconds=settings.min_seconds, rounds=settings.rounds)
    print(table(costs))
    return 0 if all(c.extra <= TARGET for c in costs) else 1


def main(argv: list[str] | None = None) -> int:
    return run_cli(HeatmapCostSettings, run, argv)


if __name__ == "__main__":
    sys.exit(main())
