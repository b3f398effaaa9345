"""The bare model and the preprocessing, timed: ``python -m loadtests.microbench`` (``make microbench``).

1. Forward-pass images/s at each batch size (default 1/8/32) for eager PyTorch (the default NCHW
   layout, and channels-last as :class:`detector.runtimes.torch_eager.TorchDetector` runs it), ONNX Runtime
   fp32 and ONNX Runtime int8 (when ``export/quantize.py`` can make it or ``--int8`` names it), OpenVINO
   fp32 and bf16 on the same fp32 file (when openvino is installed), on
   real preprocessed photos (the runtimes take turns run by run, so that other load weighs on all alike),
   with the share of this machine's FLOP peak each reaches
   (:mod:`loadtests.peak`; the model's FLOPs per image counted by ``torch.utils.flop_counter``).
2. The cost of the core's preprocessing (decode, EXIF, RGB, resize, normalise) of a 1024x1024 and
   a 4000x3000 JPEG, with and without Pillow's draft mode (``load_image(draft_size=...)``).
3. With ``--agreement-run RUN`` (and ``--checkpoint RUN/model.pt``): OpenVINO fp32 and bf16 against ONNX
   Runtime fp32 on the run's test split, judged as int8 is (``export.compare.compare_accuracy``): accuracy,
   label agreement, largest change of a calibrated probability, ROC-AUC.

Writes ``microbench.md`` and ``microbench.json`` into the work folder and prints the tables.
"""

from __future__ import annotations

import importlib.util
import io
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image
from pydantic_settings import CliApp

from detector.preprocessing import PreprocessConfig, image_to_array, load_image, preprocess
from detector.runtimes.base import Detector
from loadtests import artefacts
from loadtests.config import MicrobenchSettings
from loadtests.images import ensure_images
from loadtests.machine import describe
from loadtests.peak import Peak, machine_peak

#: the JPEGs whose preprocessing is timed: a large web image and a 12 MP camera photo
JPEG_SIZES = [(1024, 1024), (4000, 3000)]


@dataclass
class ModelRow:
    runtime: str
    batch_size: int
    images_per_second: float
    share_of_peak: float


@dataclass
class DecodeRow:
    size: str
    megabytes: float
    draft_ms: float
    full_ms: float


def timed_rate(run: Callable[[], object], items: int, min_seconds: float) -> float:
    """Items/s of one timed run: ``run`` called for at least ``min_seconds`` (and twice)."""
    calls, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < min_seconds or calls < 2:
        run()
        calls += 1
    return calls * items / elapsed


def model_flops(checkpoint: Path) -> float:
    """FLOPs of one forward pass of one image (2 per multiply-add), as PyTorch's flop counter counts them."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from detector.checkpoint import load_model

    model, meta = load_model(checkpoint)
    size = meta.preprocess_config.input_size
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(torch.zeros(1, 3, size, size))
    return float(counter.get_total_flops())


def runtimes(
    settings: MicrobenchSettings, checkpoint: Path, onnx_model: Path, int8: Path | None
) -> dict[str, Callable]:
    """Name -> a function of a (N, 3, H, W) float32 batch that runs the bare model."""
    import torch

    from detector.checkpoint import load_model
    from detector.runtimes.onnx_runtime import OnnxDetector
    from detector.runtimes.torch_eager import TorchDetector

    torch.set_num_threads(settings.threads)
    eager, _ = load_model(checkpoint)

    def eager_nchw(batch: np.ndarray) -> object:
        with torch.inference_mode():
            return eager(torch.from_numpy(batch))

    found: dict[str, Callable] = {
        "eager PyTorch (NCHW)": eager_nchw,
        "eager PyTorch (channels-last)": TorchDetector(checkpoint, threads=settings.threads, device="cpu").logits,
        "ONNX Runtime fp32": OnnxDetector(onnx_model, threads=settings.threads).logits,
    }
    if int8 is not None:
        found["ONNX Runtime int8"] = OnnxDetector(int8, threads=settings.threads).logits
    for precision, engine in openvino_engines(onnx_model, settings.threads).items():
        found[f"OpenVINO {precision}"] = engine.logits
    return found


def openvino_engines(onnx_model: Path, threads: int) -> dict[str, Detector]:
    """OpenVINO fp32 and bf16 on the fp32 file, when openvino is installed; none otherwise."""
    if importlib.util.find_spec("openvino") is None:
        return {}
    from detector.runtimes.openvino_runtime import OpenVinoDetector

    return {name: OpenVinoDetector(onnx_model, threads=threads, precision=name) for name in ("f32", "bf16")}


def measure_agreement(run: Path, onnx_model: Path, threads: int) -> list[dict[str, object]]:
    """OpenVINO fp32/bf16 against ONNX Runtime fp32 on the run's test split, as int8 is judged."""
    from detector.runtimes.onnx_runtime import OnnxDetector
    from export.compare import compare_accuracy
    from export.images import split_images

    images = split_images(run, "test")
    reference = OnnxDetector(onnx_model, threads=threads)
    rows = []
    for precision, engine in openvino_engines(onnx_model, threads).items():
        result = compare_accuracy(reference, engine, images)  # type: ignore[arg-type]
        rows.append({"engine": f"OpenVINO {precision}", **asdict(result)})
        print(f"[microbench] OpenVINO {precision} against ONNX Runtime fp32: {rows[-1]}", flush=True)
    return rows


def format_agreement(rows: list[dict[str, object]], run: Path) -> str:
    lines = [
        f"Against ONNX Runtime fp32 on the test split of {run} (each with the model's own temperature and threshold):",
        "",
        "| engine | images | accuracy (ONNX Runtime) | accuracy | change | label agreement | max \\|ΔP\\| "
        "| ROC-AUC (ONNX Runtime) | ROC-AUC |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        fp32, other = float(row["fp32_accuracy"]), float(row["int8_accuracy"])  # type: ignore[arg-type]
        aucs = [row["fp32_roc_auc"], row["int8_roc_auc"]]
        auc_cells = " | ".join("-" if value is None else f"{float(value):.4f}" for value in aucs)  # type: ignore[arg-type]
        lines.append(
            f"| {row['engine']} | {row['n']} | {100 * fp32:.2f} % | {100 * other:.2f} % | {100 * (other - fp32):+.2f} "
            f"points | {100 * float(row['agreement']):.2f} % | {float(row['max_probability_difference']):.2e} "  # type: ignore[arg-type]
            f"| {auc_cells} |"
        )
    return "\n".join(lines)


def sample_batch(images: list[Path], config: PreprocessConfig, size: int) -> np.ndarray:
    arrays = np.stack([preprocess(path, config) for path in images[: min(size, len(images))]])
    return np.ascontiguousarray(np.resize(arrays, (size, *arrays.shape[1:])), dtype=np.float32)


def measure_models(
    settings: MicrobenchSettings, checkpoint: Path, onnx_model: Path, int8: Path | None, peak: Peak
) -> list[ModelRow]:
    from detector.checkpoint import load_checkpoint

    config = load_checkpoint(checkpoint).metadata.preprocess_config
    images = ensure_images(settings.images, 20)
    flops = model_flops(checkpoint)
    rows = []
    engines = runtimes(settings, checkpoint, onnx_model, int8)
    for size in settings.batch_sizes:
        batch = sample_batch(images, config, size)
        for run in engines.values():  # warm-up: first calls allocate memory and pick kernels
            run(batch)
            run(batch)
        rates: dict[str, list[float]] = {name: [] for name in engines}
        # the runtimes take turns, run by run, so that load from other processes weighs on all alike
        for _ in range(settings.repeats):
            for name, run in engines.items():
                rates[name].append(timed_rate(lambda run=run, batch=batch: run(batch), size, settings.min_seconds))
        for name, values in rates.items():
            rate = statistics.median(values)
            rows.append(ModelRow(name, size, rate, rate * flops / (peak.measured_gflops * 1e9)))
            print(f"[microbench] {name}, batch {size}: {rate:.1f} images/s", flush=True)
    return rows


def photo_jpeg(size: tuple[int, int]) -> bytes:
    """matplotlib's photograph of Grace Hopper resized to ``size``, as a quality-90 JPEG."""
    photo = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")
    buffer = io.BytesIO()
    photo.resize(size, Image.Resampling.BICUBIC).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def measure_decoding(settings: MicrobenchSettings, config: PreprocessConfig) -> list[DecodeRow]:
    rows = []
    for size in JPEG_SIZES:
        data = photo_jpeg(size)

        def draft(data: bytes = data) -> np.ndarray:
            return image_to_array(load_image(data, draft_size=config.input_size), config)

        def full(data: bytes = data) -> np.ndarray:
            return image_to_array(load_image(data, draft_size=None), config)

        timings = {}
        for name, run in (("draft", draft), ("full", full)):
            run()
            samples = []
            for _ in range(settings.decode_repeats):
                started = time.perf_counter()
                run()
                samples.append(1000 * (time.perf_counter() - started))
            timings[name] = statistics.median(samples)
        rows.append(DecodeRow(f"{size[0]}x{size[1]}", len(data) / 1e6, timings["draft"], timings["full"]))
    return rows


def format_tables(
    model_rows: list[ModelRow], decode_rows: list[DecodeRow], flops: float, peak: Peak, threads: int
) -> str:
    batch_sizes = sorted({row.batch_size for row in model_rows})
    by_runtime: dict[str, dict[int, ModelRow]] = {}
    for row in model_rows:
        by_runtime.setdefault(row.runtime, {})[row.batch_size] = row
    head = " | ".join(f"batch {size}" for size in batch_sizes)
    lines = [
        f"Bare model, {threads} intra-op threads, {flops / 1e9:.2f} GFLOP per image; images/s (share of the "
        f"measured peak). Peak: {peak.describe()}.",
        "",
        f"| runtime | {head} |",
        "| --- |" + " ---: |" * len(batch_sizes),
    ]
    for runtime, rows in by_runtime.items():
        cells = " | ".join(
            f"{rows[size].images_per_second:.1f} ({100 * rows[size].share_of_peak:.0f} %)" if size in rows else "-"
            for size in batch_sizes
        )
        lines.append(f"| {runtime} | {cells} |")
    lines += [
        "",
        "Preprocessing one JPEG with the core (decode, EXIF, RGB, resize to 224, normalise), median ms:",
        "",
        "| JPEG | MB | draft mode (`draft_size=224`) | full decode | speed-up |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in decode_rows:
        lines.append(
            f"| {row.size} | {row.megabytes:.2f} | {row.draft_ms:.1f} | {row.full_ms:.1f} "
            f"| {row.full_ms / row.draft_ms:.1f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    settings = CliApp.run(MicrobenchSettings, cli_args=argv)
    work = settings.work_dir
    ensure_images(settings.images, 20)
    checkpoint = artefacts.bench_checkpoint(work, settings.checkpoint)
    onnx_model = artefacts.bench_onnx(work, checkpoint, settings.images)
    int8 = None if settings.no_int8 else artefacts.bench_int8(work, onnx_model, settings.images, settings.int8)
    from detector.checkpoint import load_checkpoint

    config = load_checkpoint(checkpoint).metadata.preprocess_config
    peak = machine_peak(settings.threads)
    print(f"[microbench] {describe()}; {peak.describe()}", flush=True)
    model_rows = measure_models(settings, checkpoint, onnx_model, int8, peak)
    decode_rows = measure_decoding(settings, config)
    agreement = []
    if settings.agreement_run is not None:
        agreement = measure_agreement(settings.agreement_run, onnx_model, settings.threads)
    flops = model_flops(checkpoint)
    text = f"{describe()}; model {checkpoint.name}\n\n" + format_tables(
        model_rows, decode_rows, flops, peak, settings.threads
    )
    if agreement:
        text += "\n\n" + format_agreement(agreement, settings.agreement_run)  # type: ignore[arg-type]
    print("\n" + text)
    if int8 is None:
        print("\n(no int8 model: export/quantize.py is not in this checkout; or pass --int8)")
    (work / "microbench.md").write_text(text + "\n")
    (work / "microbench.json").write_text(
        json.dumps(
            {
                "machine": describe(),
                "peak": {**asdict(peak), "nominal_gflops": peak.nominal_gflops},
                "flops_per_image": flops,
                "models": [asdict(row) for row in model_rows],
                "preprocessing": [asdict(row) for row in decode_rows],
                "agreement": agreement,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwritten to {work / 'microbench.md'} and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
