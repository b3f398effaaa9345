"""The GPU path, timed: ``python -m loadtests.bench_gpu`` (``make bench-gpu``), in at most ~5 minutes.

For a GPU machine that has torch with CUDA, torchvision, timm, numpy and Pillow but no package registry and no
Java. It installs nothing. What it prints (and writes as ``results.md`` / ``results.json`` into ``--output``):

1. **model**: images/s of the forward pass alone (:class:`detector.runtimes.torch_cuda.CudaDetector`, inputs
   already on the device) in fp32, bf16 and fp16 autocast, and fp16 ``torch.compile``d, each at batch 1, 32
   and 256;
2. **decode**: images/s of the CPU path's preprocessing (Pillow, draft mode) in 1 and in all-cores processes,
   against the device path (:mod:`detector.gpu_preprocessing`): reading and checking the headers on the CPU,
   and nvJPEG decoding + resize + normalisation on the GPU, batches of 256;
3. **scan**: ``detector-scan --device cuda`` end to end on a folder of JPEGs (reports written; evidence off);
4. **handler**: the TorchServe handler driven in-process (TorchServe's Java frontend is absent) with the GPU
   model config (``torchserve/model-config-gpu.yaml``), on the GPU TorchServe would assign it
   (``gpu_id`` 0): images/s and batch latency at its batch size;
5. **agreement**, when ``--agreement-images`` names real images (default: a sample of
   ``../shared/data/realvsai-v1`` when it is there): the device path in fp16, bf16 and fp32 against the CPU
   path (Pillow + eager fp32), labels agreeing and the largest |delta P(ai)| (:func:`agreement`, also the
   tests' measure).

The scan and the handler need the project's other dependencies (pydantic and pydantic-settings, defusedxml):
where they are missing, ``make bench-gpu`` installs them from wheels brought along in ``.whl/`` (``make
gpu-wheels`` downloads them on a machine with a registry), else those sections say what is missing and the
others run. The handler imports TorchServe's ``ts`` package only for two names (``BaseHandler``,
``Dimension``); without ``ts`` installed, a stand-in for those two is put in its place.

Images: ``--images DIR`` (JPEGs; by default ``--count`` JPEGs of 1024x768, the size of the issue's decode
figure, made from scikit-learn's or matplotlib's sample photographs, or synthetic where neither is
installed). ``--quick`` runs everything with tiny sizes, on the CPU when there is no GPU, so that the
script itself is tested where no GPU is.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.util
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from detector import SHIPPED_MODEL
from detector.preprocessing import SUBSAMPLING_420, SUBSAMPLING_422, PreprocessConfig, list_images, preprocess

ROOT = Path(__file__).resolve().parent.parent
SHARED_MANIFEST = ROOT.parent / "shared" / "data" / "realvsai-v1" / "manifest.csv"
GPU_CONFIG = ROOT / "torchserve" / "model-config-gpu.yaml"
PHOTO_SIZE = (1024, 768)
#: what the sections need beyond torch, torchvision, timm, numpy and Pillow
SCAN_NEEDS = ("pydantic", "pydantic_settings", "defusedxml", "tqdm", "jinja2")
HANDLER_NEEDS = ("pydantic",)
#: files with differing labels listed per agreement row
MAX_DISAGREEMENTS = 10


# --- the agreement of the two paths (tests/test_gpu.py measures with it too) ---------------------------------


@dataclass
class Agreement:
    """How the device path's answers compare with the CPU path's on the same files."""

    images: int
    agree: int
    max_delta_p_ai: float
    mean_delta_p_ai: float
    device_decoded: int
    device: str
    precision: str
    #: the first few files whose labels differ: "name: P(ai) CPU -> device", to see how near a threshold they sit
    disagreements: list[str] = field(default_factory=list)

    @property
    def agreement(self) -> float:
        return self.agree / self.images if self.images else 1.0

    def __str__(self) -> str:
        return (
            f"{self.images} images, device {self.device}, {self.precision}: labels agree on {self.agreement:.2%} "
            f"({self.agree}/{self.images}), max |delta P(ai)| {self.max_delta_p_ai:.4f}, mean "
            f"{self.mean_delta_p_ai:.5f}; {self.device_decoded} decoded by the device decoder"
        )


def sample_images(source: Path, count: int, *, min_pixels: int = 0) -> list[Path]:
    """An even sample of ``count`` images: every k-th row of a manifest (all sources, both labels), or of a folder.

    ``min_pixels``: only images of at least this many pixels by their header (the large photos, where the
    two paths' decoders differ most: draft mode against a full-size decode box-reduced).
    """
    if source.suffix == ".csv":
        with source.open(newline="") as handle:
            paths = [source.parent / row["path"] for row in csv.DictReader(handle)]
    else:
        paths = list_images(source)
    if min_pixels:
        paths = [path for path in paths if _pixels(path) >= min_pixels]
    step = max(1, len(paths) // max(1, count))
    return paths[::step][:count]


def _pixels(path: Path) -> int:
    """Width x height from the header (0 for a file Pillow cannot open)."""
    try:
        with Image.open(path) as image:
            return image.width * image.height
    except (OSError, ValueError, Image.DecompressionBombError):
        return 0


def agreement(
    checkpoint: Path, paths: Sequence[Path], *, device: str, precision: str = "fp16", batch: int = 64
) -> Agreement:
    """The CPU path (Pillow preprocessing, eager fp32 on the CPU) against the device path on ``device``."""
    return agreements(checkpoint, paths, device=device, precisions=[precision], batch=batch)[0]


def agreements(
    checkpoint: Path, paths: Sequence[Path], *, device: str, precisions: Sequence[str], batch: int = 64
) -> list[Agreement]:
    """:func:`agreement` for each precision of the device path, the CPU path's answers computed once."""
    from detector.runtimes.torch_cuda import CudaDetector
    from detector.runtimes.torch_eager import TorchDetector

    reference = TorchDetector(checkpoint, device="cpu")
    candidates = [
        CudaDetector(checkpoint, device=device, precision=precision, max_batch=batch)  # type: ignore[arg-type]
        for precision in precisions
    ]
    agree, deltas, decoded = [0] * len(candidates), [[] for _ in candidates], 0
    differing: list[list[str]] = [[] for _ in candidates]
    for first in range(0, len(paths), batch):
        chunk = list(paths[first : first + batch])
        expected = reference.classify(np.stack([reference.preprocess(path) for path in chunk]))
        device_batch = candidates[0].preprocessor(chunk)  # the same preprocessing for every precision
        if device_batch.errors:
            raise ValueError(f"the device path refused {len(device_batch.errors)} files the CPU path decoded")
        decoded += device_batch.device_decoded
        for n, candidate in enumerate(candidates):
            for path, want, got in zip(chunk, expected, candidate.decide_batch(device_batch), strict=True):
                agree[n] += want.label == got.label  # type: ignore[union-attr]
                deltas[n].append(abs(want.p_ai - got.p_ai))  # type: ignore[union-attr]
                if want.label != got.label and len(differing[n]) < MAX_DISAGREEMENTS:  # type: ignore[union-attr]
                    differing[n].append(f"{Path(path).name}: {want.p_ai:.4f} -> {got.p_ai:.4f}")  # type: ignore[union-attr]
    return [
        Agreement(
            images=len(paths),
            agree=agree[n],
            max_delta_p_ai=round(max(deltas[n], default=0.0), 6),
            mean_delta_p_ai=round(statistics.fmean(deltas[n]) if deltas[n] else 0.0, 6),
            device_decoded=decoded,
            device=device,
            precision=precision,
            disagreements=differing[n],
        )
        for n, precision in enumerate(precisions)
    ]


# --- images --------------------------------------------------------------------------------------------------


#: where installed photographs are found: scikit-learn's two sample photos, else matplotlib's Grace Hopper
PHOTO_PACKAGES = (("sklearn", "datasets/images", "*.jpg"), ("matplotlib", "mpl-data/sample_data", "grace_hopper.jpg"))


def sample_photos() -> list[Path]:
    """Real photographs installed with scikit-learn or matplotlib (the first found), or none.

    The issue's GPU machine need have only torch, torchvision, timm, numpy and Pillow, none of which ships a
    photograph, so :func:`make_photos` falls back to :func:`synthetic_photo` where neither package is there.
    """
    for package, folder, pattern in PHOTO_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin is not None:
            found = sorted((Path(spec.origin).parent / folder).glob(pattern))
            if found:
                return found
    return []


def synthetic_photo(seed: int, size: tuple[int, int]) -> Image.Image:
    """A photo-like picture: smooth shapes and finer texture, each weaker, plus sensor grain.

    At 1024x768 its JPEG is close to the sample photographs' in size and decode time, which is what the decode
    figures measure.
    """
    rng = np.random.default_rng(seed)
    width, height = size
    pixels = np.full((height, width, 3), 128.0, dtype=np.float32)
    for cells, amplitude in ((4, 60.0), (16, 25.0), (64, 10.0)):
        for channel in range(3):
            field = rng.normal(size=(max(2, cells * height // width), cells)).astype(np.float32)
            layer = Image.fromarray(field, mode="F").resize(size, Image.Resampling.BICUBIC)
            pixels[..., channel] += amplitude * np.asarray(layer)
    pixels += rng.normal(scale=3.0, size=(height, width, 1))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _make_photo(args: tuple[Path, Path | None, int, tuple[int, int]]) -> None:
    path, source, seed, size = args
    rng = random.Random(seed)
    if source is None:
        synthetic_photo(seed, size).save(path, quality=rng.randint(80, 95))
        return
    photo = Image.open(source).convert("RGB")
    left, top = rng.randint(0, 60), rng.randint(0, 60)
    crop = photo.crop((left, top, left + photo.width - 60, top + photo.height - 60))
    crop.resize(size, Image.Resampling.BICUBIC).save(path, quality=rng.randint(80, 95))


def make_photos(
    folder: Path, count: int, size: tuple[int, int], photos: Sequence[Path], unique: int = 256
) -> list[Path]:
    """``count`` JPEGs of ``size`` in ``folder``: ``unique`` distinct crops of ``photos`` (:func:`sample_photos`;
    :func:`synthetic_photo` where there are none) at qualities 80-95, hard-linked to ``count``."""
    folder.mkdir(parents=True, exist_ok=True)
    existing = list_images(folder)
    if len(existing) >= count:
        return existing[:count]
    distinct = [folder / f"photo_{i:05d}.jpg" for i in range(min(unique, count))]
    sources: list[Path | None] = list(photos) or [None]
    with get_context("spawn").Pool(os.cpu_count() or 1) as pool:
        pool.map(_make_photo, [(path, sources[i % len(sources)], i, size) for i, path in enumerate(distinct)])
    for i in range(len(distinct), count):
        link = folder / f"photo_{i:05d}.jpg"
        if not link.exists():
            os.link(distinct[i % len(distinct)], link)
    return list_images(folder)[:count]


# --- timing --------------------------------------------------------------------------------------------------


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(run: Callable[[], object], items: int, device: torch.device, seconds: float, repeats: int) -> float:
    """Median over ``repeats`` of items/s, each timing calling ``run`` for at least ``seconds`` (after 2 warm-ups)."""
    for _ in range(2):
        run()
    _synchronize(device)
    rates = []
    for _ in range(repeats):
        calls, started = 0, time.perf_counter()
        while calls < 2 or time.perf_counter() - started < seconds:
            run()
            calls += 1
        _synchronize(device)
        rates.append(calls * items / (time.perf_counter() - started))
    return statistics.median(rates)


@dataclass
class Report:
    """The figures, by section, and the notes that go with them."""

    machine: dict[str, Any]
    sections: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, section: str, **row: Any) -> None:
        self.sections.setdefault(section, []).append(row)
        print(f"  {section}: " + ", ".join(f"{key}={value}" for key, value in row.items()), flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    def markdown(self) -> str:
        lines = [f"# make bench-gpu, {self.machine['when']}", "", f"Machine: {self.machine['description']}", ""]
        for section, rows in self.sections.items():
            columns = list(dict.fromkeys(key for row in rows for key in row))
            lines += [f"## {section}", "", "| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
            lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
            lines.append("")
        if self.notes:
            lines += ["## notes", "", *[f"- {note}" for note in self.notes], ""]
        return "\n".join(lines)


def describe_machine(device: torch.device) -> dict[str, Any]:
    import torchvision

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "no GPU (device cpu)"
    return {
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "gpu": gpu,
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "description": f"{gpu}; {os.cpu_count()} logical CPUs; torch {torch.__version__}, "
        f"torchvision {torchvision.__version__}, Python {sys.version.split()[0]}",
    }


def missing(modules: Sequence[str]) -> list[str]:
    return [name for name in modules if importlib.util.find_spec(name) is None]


# --- 1. the model --------------------------------------------------------------------------------------------


def bench_model(report: Report, options: argparse.Namespace, deadline: float) -> None:
    from detector.runtimes.torch_cuda import CudaDetector

    variants = [("fp32", False), ("bf16", False), ("fp16", False)] + ([("fp16", True)] if options.compile else [])
    for precision, compiled in variants:
        if compiled and deadline - time.monotonic() < options.compile_reserve:
            report.note("torch.compile skipped: too little of the time budget left (--budget)")
            continue
        detector = CudaDetector(
            options.checkpoint,
            device=options.device,
            precision=precision,  # type: ignore[arg-type]
            compile=compiled,
            max_batch=max(options.batches),
        )
        size = detector.preprocess_config.input_size
        for batch in options.batches:
            inputs = detector.to_device(torch.randn(batch, 3, size, size))  # channels-last, as the runtime runs it
            started = time.perf_counter()
            images_per_s = rate(
                lambda inputs=inputs, run=detector.logits_tensor: run(inputs),
                batch,
                detector.device,
                options.seconds,
                options.repeats,
            )
            name = f"{precision}{' compiled' if compiled else ''}"
            report.add(
                "model",
                runtime=name,
                batch=batch,
                images_per_s=round(images_per_s, 1),
                seconds_incl_warmup=round(time.perf_counter() - started, 1),
            )


# --- 2. decoding ---------------------------------------------------------------------------------------------

_CONFIG = PreprocessConfig()


def _cpu_preprocess(path: Path) -> int:
    return preprocess(path, _CONFIG).shape[0]


def bench_decode(report: Report, options: argparse.Namespace, photos: list[Path]) -> None:
    from detector.gpu_preprocessing import DevicePreprocessor

    files = photos[: options.decode_images]
    processes = sorted({1, os.cpu_count() or 1})
    for count in processes:
        with get_context("spawn").Pool(count) as pool:
            pool.map(_cpu_preprocess, files[: 2 * count])  # warm-up: start every process
            started = time.perf_counter()
            pool.map(_cpu_preprocess, files, chunksize=8)
            elapsed = time.perf_counter() - started
        report.add(
            "decode",
            path=f"CPU: Pillow (draft mode) + resize, {count} process{'es' if count > 1 else ''}",
            images_per_s=round(len(files) / elapsed, 1),
        )
    preprocessor = DevicePreprocessor(_CONFIG, options.device)
    device = preprocessor.device
    names = {SUBSAMPLING_422: "4:2:2", SUBSAMPLING_420: "4:2:0"}
    repeated = ", ".join(names[sampling] for sampling in sorted(preprocessor.replicated))
    report.note(f"the device decoder repeats colour over its blocks for: {repeated or 'none'} (interpolated back)")
    threads = os.cpu_count() or 1
    with ThreadPoolExecutor(threads) as pool:
        staged = list(pool.map(preprocessor.stage, files))
        cpu_side = rate(
            lambda: list(pool.map(preprocessor.stage, files)),
            len(files),
            torch.device("cpu"),
            options.seconds,
            options.repeats,
        )
    report.add(
        "decode",
        path=f"device path, CPU side: read + header check, {threads} threads",
        images_per_s=round(cpu_side, 1),
    )
    batch = min(256, len(staged))
    chunks = [staged[first : first + batch] for first in range(0, len(staged) - batch + 1, batch)]
    decoded = sum(preprocessor.batch(chunk).device_decoded for chunk in chunks[:1])
    per_chunk = rate(
        lambda: [preprocessor.batch(chunk) for chunk in chunks],
        len(chunks) * batch,
        device,
        options.seconds,
        options.repeats,
    )
    name = "nvJPEG" if device.type == "cuda" else "torchvision decode_jpeg on the CPU"
    report.add(
        "decode",
        path=f"device path, device side: {name} + resize + normalise, batches of {batch}",
        images_per_s=round(per_chunk, 1),
    )
    if decoded < batch:
        report.note(f"only {decoded} of {batch} files of a batch went to the device decoder (the rest: Pillow)")


# --- 3. detector-scan ----------------------------------------------------------------------------------------


def bench_scan(report: Report, options: argparse.Namespace, folder: Path, count: int, output: Path) -> None:
    lacking = missing(SCAN_NEEDS)
    if lacking:
        report.note(
            f"detector-scan skipped: needs {', '.join(lacking)} (bring wheels: make gpu-wheels, then make bench-gpu)"
        )
        return
    command = [
        sys.executable, "-m", "scan", str(folder), "--model", str(options.checkpoint), "--device", options.device,
        "--batch-size", str(options.scan_batch), "--workers", str(options.scan_workers), "--no-evidence",
        "--no-resume", "--format", "csv", "--output", str(output / "scan"),
    ]  # fmt: skip
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        report.note(f"detector-scan failed ({result.returncode}): {(result.stderr or result.stdout)[-800:]}")
        return
    summary = dict(re.findall(r"(\w+)=(\S+)", result.stdout))
    report.add(
        "scan",
        command=" ".join(["detector-scan", *command[3:]]),
        images=count,
        images_per_s=summary.get("images_per_second"),
        seconds_scanning=summary.get("seconds"),
        wall_seconds_incl_start=round(wall, 1),
    )


# --- 4. the TorchServe handler, in-process ---------------------------------------------------------------------


def install_ts_stand_in() -> bool:
    """Put a stand-in for ``ts`` (its ``BaseHandler`` and ``Dimension``) in place when TorchServe is not installed.

    Returns whether it did. The handler uses nothing else of ``ts``; TorchServe itself needs Java anyway.
    """
    if importlib.util.find_spec("ts") is not None:
        return False

    class BaseHandler:
        def __init__(self) -> None:
            self.model = self.mapping = self.device = self.context = self.manifest = None
            self.initialized = False

    class Dimension:
        def __init__(self, name: str, value: str) -> None:
            self.name, self.value = name, value

    modules = {
        "ts": types.ModuleType("ts"),
        "ts.torch_handler": types.ModuleType("ts.torch_handler"),
        "ts.torch_handler.base_handler": types.ModuleType("ts.torch_handler.base_handler"),
        "ts.metrics": types.ModuleType("ts.metrics"),
        "ts.metrics.dimension": types.ModuleType("ts.metrics.dimension"),
    }
    modules["ts.torch_handler.base_handler"].BaseHandler = BaseHandler  # type: ignore[attr-defined]
    modules["ts.metrics.dimension"].Dimension = Dimension  # type: ignore[attr-defined]
    sys.modules.update(modules)
    return True


class _Metrics:
    def add_counter(self, *args: Any, **kwargs: Any) -> None: ...

    def add_time(self, *args: Any, **kwargs: Any) -> None: ...


class HandlerContext:
    """What the handler reads of TorchServe's context, for a model file and a model config's ``handler:`` section."""

    def __init__(self, model: Path, handler_config: dict[str, Any], gpu_id: int | None) -> None:
        self.model_name = "detector"
        self.manifest = {"model": {"serializedFile": model.name, "modelVersion": "bench"}}
        self.system_properties = {"model_dir": str(model.parent), "gpu_id": gpu_id}
        self.model_yaml_config = {"handler": handler_config}
        self.metrics = _Metrics()

    def get_request_header(self, index: int, name: str) -> str | None:
        return None

    def set_response_status(self, code: int, phrase: str, index: int) -> None: ...


def gpu_model_config() -> dict[str, Any]:
    """``torchserve/model-config-gpu.yaml`` (batchSize and the handler section); its defaults without PyYAML."""
    try:
        import yaml

        return yaml.safe_load(GPU_CONFIG.read_text()) or {}
    except ImportError:
        return {"batchSize": 256, "handler": {}}


def bench_handler(report: Report, options: argparse.Namespace, photos: list[Path]) -> None:
    lacking = missing(HANDLER_NEEDS)
    if lacking:
        report.note(f"handler skipped: needs {', '.join(lacking)} (bring wheels: make gpu-wheels, then make bench-gpu)")
        return
    if install_ts_stand_in():
        report.note(
            "TorchServe's ts package is not installed: the handler ran with a stand-in for BaseHandler and Dimension"
        )
    sys.path.insert(0, str(ROOT / "handlers"))  # TorchServe loads the handler as a top-level module
    import torchserve_handler

    config = gpu_model_config()
    batch = options.handler_batch or int(config.get("batchSize", 256))
    handler_config = dict(config.get("handler") or {})
    gpu_id = 0 if options.device.startswith("cuda") else None
    if gpu_id is None:
        handler_config["device"] = "cpu"
    handler = torchserve_handler.DetectorHandler()
    context = HandlerContext(options.checkpoint, handler_config, gpu_id)
    handler.initialize(context)
    bodies = [{"body": path.read_bytes()} for path in (photos * (batch // max(1, len(photos)) + 1))[:batch]]
    latencies: list[float] = []
    for _ in range(2):
        handler.handle(bodies, context)
    started = time.perf_counter()
    while len(latencies) < 3 or time.perf_counter() - started < options.seconds * options.repeats:
        begin = time.perf_counter()
        answers = handler.handle(bodies, context)
        latencies.append(time.perf_counter() - begin)
    if not all("label" in answer for answer in answers):
        report.note(f"the handler refused some images: {[a for a in answers if 'label' not in a][:2]}")
    median = statistics.median(latencies)
    report.add(
        "handler",
        runtime=getattr(handler, "runtime", "?"),
        batch=batch,
        images_per_s=round(batch / median, 1),
        batch_ms_p50=round(1000 * median, 1),
        batch_ms_max=round(1000 * max(latencies), 1),
        batches=len(latencies),
    )


# --- the command ---------------------------------------------------------------------------------------------


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench_gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--device", default="cuda" if cuda else "cpu", help="cuda (default where torch sees one) or cpu"
    )
    parser.add_argument(
        "--checkpoint", type=Path, default=SHIPPED_MODEL, help="the .pt model (default: the shipped one)"
    )
    parser.add_argument(
        "--images", type=Path, help="a folder of JPEGs (default: real-photo JPEGs of 1024x768, made once)"
    )
    parser.add_argument("--count", type=int, help="images scanned end to end (default 8192; --quick 24)")
    parser.add_argument(
        "--agreement-images", type=Path, help="a manifest.csv or folder of real images to compare the paths on"
    )
    parser.add_argument("--agreement-count", type=int, default=1024, help="images in the agreement sample")
    parser.add_argument(
        "--agreement-min-pixels", type=int, default=0, help="sample only images of at least this many pixels"
    )
    parser.add_argument(
        "--repeat-colour",
        action="store_true",
        help="agreement only: decode as nvJPEG does, each colour sample repeated over its block (libjpeg-turbo's "
        "fast upsampling, via simplejpeg): what the GPU does to the agreement, measured on the CPU",
    )
    parser.add_argument(
        "--keep-repeated-colour",
        dest="interpolate_colour",
        action="store_false",
        help="with --repeat-colour: do not interpolate it back (the GPU path before detector/jpeg_chroma.py)",
    )
    parser.add_argument(
        "--output", type=Path, default=ROOT / "runs" / "bench-gpu", help="results.md/.json go into OUTPUT/<time>/"
    )
    parser.add_argument("--seconds", type=float, default=1.0, help="each timing runs at least this long")
    parser.add_argument("--repeats", type=int, default=3, help="timings per figure (the median is given)")
    parser.add_argument(
        "--budget", type=float, default=285.0, help="seconds for the whole run; later sections are skipped past it"
    )
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip the torch.compile rows")
    parser.add_argument(
        "--skip", default="", help="comma-separated sections to skip: model,decode,scan,handler,agreement"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the CPU check of this script)")
    options = parser.parse_args(argv)
    options.compile_reserve = 120.0  # seconds torch.compile may take for three batch sizes on a fresh machine
    if options.quick:
        options.batches = [1, 4]
        options.count = options.count or 24
        options.decode_images = options.count
        options.seconds, options.repeats = min(options.seconds, 0.2), 1
        options.compile = options.compile and options.device.startswith("cuda")
        options.scan_batch, options.scan_workers, options.handler_batch = 8, 2, 8
        options.agreement_count = min(options.agreement_count, 16)
        options.photo_size = (320, 240)
    else:
        options.batches = [1, 32, 256]
        options.count = options.count or 8192
        options.decode_images = min(options.count, 2048)
        options.scan_batch, options.scan_workers, options.handler_batch = 256, os.cpu_count() or 1, None
        options.photo_size = PHOTO_SIZE
    return options


def main(argv: Sequence[str] | None = None) -> int:
    options = parse(argv)
    deadline = time.monotonic() + options.budget
    skip = {part for part in options.skip.split(",") if part}
    device = torch.device(options.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda, but torch sees no CUDA device (run with --quick on a CPU)", file=sys.stderr)
        return 2
    report = Report(describe_machine(device))
    print(report.machine["description"], flush=True)
    output = options.output / time.strftime("%Y%m%d-%H%M%S")
    output.mkdir(parents=True, exist_ok=True)
    photos: list[Path] = []
    folder = options.images
    if {"decode", "scan", "handler"} - skip:
        if folder is not None:
            photos = list_images(folder)
        else:
            width, height = options.photo_size
            sources = sample_photos()
            kind = "photos" if sources else "synthetic"
            folder = Path(tempfile.gettempdir()) / f"bench-gpu-{kind}-{width}x{height}"
            photos = make_photos(folder, options.count, options.photo_size, sources)
            made_from = ", ".join(path.name for path in sources) or "synthetic pictures (no photograph here)"
            report.note(f"images made from {made_from}")
        if not photos:
            print(f"error: no images in {folder}", file=sys.stderr)
            return 2
        first = photos[0]
        report.note(f"images: {len(photos)} files in {folder} (first: {first.name}, {Image.open(first).size})")
    agreement_source = options.agreement_images or (SHARED_MANIFEST if SHARED_MANIFEST.is_file() else None)
    sections: list[tuple[str, Callable[[], None]]] = [
        ("model", lambda: bench_model(report, options, deadline)),
        ("decode", lambda: bench_decode(report, options, photos)),
        ("scan", lambda: bench_scan(report, options, folder, len(photos), output)),  # type: ignore[arg-type]
        ("handler", lambda: bench_handler(report, options, photos)),
    ]
    if agreement_source is not None:
        sample = sample_images(agreement_source, options.agreement_count, min_pixels=options.agreement_min_pixels)

        def compare() -> None:
            precisions = ["fp16", "bf16", "fp32"]
            decoder: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
            if options.repeat_colour:
                from loadtests.repeating_decoder import repeating_colour

                decoder = repeating_colour(interpolated=options.interpolate_colour)
                kept = "" if options.interpolate_colour else ", kept repeated (--keep-repeated-colour)"
                report.note(f"agreement: the device decoder repeats colour as nvJPEG does (--repeat-colour){kept}")
            with decoder:
                results = agreements(options.checkpoint, sample, device=options.device, precisions=precisions)
            for result in results:
                row = {**asdict(result), "agreement": round(result.agreement, 4)}
                report.add("agreement", **{**row, "disagreements": "; ".join(result.disagreements)})

        sections.append(("agreement", compare))
    else:
        report.note("agreement skipped: no real images (--agreement-images, or ../shared/data/realvsai-v1)")
    for name, run in sections:
        if name in skip:
            continue
        if time.monotonic() > deadline:
            report.note(f"{name} skipped: the time budget (--budget {options.budget:.0f} s) is spent")
            continue
        print(f"== {name}", flush=True)
        started = time.monotonic()
        try:
            run()
        except Exception as error:  # noqa: BLE001 (one failing section must not lose the others' figures)
            report.note(f"{name} failed: {type(error).__name__}: {error}")
        print(f"   ({time.monotonic() - started:.1f} s)", flush=True)
    (output / "results.md").write_text(report.markdown())
    (output / "results.json").write_text(json.dumps(asdict(report), indent=2))
    print()
    print(report.markdown())
    print(f"written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
