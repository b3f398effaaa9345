"""``detector-scan``: score folders of images through OpenVINO or ONNX Runtime, or a checkpoint, into reports."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice

import numpy as np
from pydantic import ValidationError
from pydantic_settings import CliApp
from tqdm import tqdm

from detector.runtimes import Detector, EngineUnavailable, open_detector
from provenance import Evidence, ProvenanceSettings
from scan.config import ScanSettings
from scan.files import expand
from scan.reports import OutdatedReport, ReportWriter, report_paths, summarise, write_html
from scan.scoring import Decoded, failed, on_device, prepare, score, variants

#: what each decoding task hands the model: the input, the file's evidence, its consistency variants
Prepared = tuple[Decoded, list[Evidence], np.ndarray | None]


def _batches(paths: list[str], size: int) -> Iterator[list[str]]:
    iterator = iter(paths)
    while batch := list(islice(iterator, size)):
        yield batch


def _check_explains(detector: Detector) -> None:
    """Raise NotImplementedError (saying what to do) unless ``detector`` computes the class activation map."""
    size = detector.preprocess_config.input_size
    detector.logits_and_cam(np.zeros((1, 3, size, size), dtype=np.float32))


def run_scan(settings: ScanSettings) -> dict[str, float]:
    """Scan, write the reports, and return the summary (counts per label, errors, images/s)."""
    gpu = settings.device != "cpu"
    device = settings.device if gpu else None
    detector: Detector = open_detector(
        settings.model, threads=settings.threads, device=device, precision=settings.precision, engine=settings.engine
    )
    if settings.explain is not None:
        _check_explains(detector)
        settings.explain.mkdir(parents=True, exist_ok=True)
    writer = ReportWriter(settings.output, settings.format, resume=settings.resume)
    done = {row.path for row in writer.rows()}
    todo = [path for path in expand(settings.inputs, settings.paths_from) if path not in done]
    provenance = ProvenanceSettings() if settings.evidence else None
    started = time.perf_counter()
    with ThreadPoolExecutor(settings.workers) as pool, tqdm(total=len(todo), unit="img", desc="scan") as bar:

        def load(path: str) -> Prepared:
            decoded, found = prepare(detector, path, settings.max_pixels, provenance)
            check = settings.consistency and not failed(decoded)
            return decoded, found, variants(detector, path, settings.max_pixels) if check else None

        def submit(batch: list[str]) -> list[Future[Prepared]]:
            return [pool.submit(load, path) for path in batch]

        batches = _batches(todo, settings.batch_size)
        current = next(batches, None)
        pending = submit(current) if current else []
        while current:
            upcoming = next(batches, None)
            # decode the next batch while this one runs through the model
            following = submit(upcoming) if upcoming else []
            prepared = [future.result() for future in pending]
            # on the GPU path the staged files of the batch are decoded together now, on the device
            decoded = on_device(detector, [item for item, _, _ in prepared], settings.max_pixels)
            evidence = [found for _, found, _ in prepared]
            checks = [check for _, _, check in prepared]
            rows = score(
                detector,
                current,
                decoded,
                settings.threshold,
                evidence,
                real_threshold=settings.real_threshold,
                checks=checks if settings.consistency else None,
                explain=settings.explain,
            )
            writer.write(rows)
            bar.update(len(rows))
            current, pending = upcoming, following
    writer.close()
    elapsed = time.perf_counter() - started
    rows = writer.rows()
    if settings.html and rows:
        write_html(rows, settings.output.with_name(settings.output.name + ".html"))
    summary = summarise(rows) if rows else {"images": len(todo)}
    return {
        **summary,
        "scanned_now": len(todo),
        "skipped_as_done": len(done),
        "seconds": round(elapsed, 2),
        "images_per_second": round(len(todo) / elapsed, 1) if elapsed > 0 and todo else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    try:
        settings = CliApp.run(ScanSettings, cli_args=argv)
    except ValidationError as error:
        print(f"error: {error.errors()[0]['msg']}", file=sys.stderr)
        return 2
    if not settings.inputs and settings.paths_from is None:
        print("error: name files or folders to scan (or --paths-from FILE); see --help", file=sys.stderr)
        return 2
    missing = [str(p) for p in settings.inputs if not p.exists()]
    if missing:
        print(f"error: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        summary = run_scan(settings)
    except FileNotFoundError as error:
        print(f"error: {error} (make export writes model_store/detector.onnx; or pass --model)", file=sys.stderr)
        return 2
    except EngineUnavailable as error:  # --engine or --device names what this machine has not installed
        print(f"error: {error}", file=sys.stderr)
        return 2
    except NotImplementedError as error:  # --explain with a model that has no heatmap output
        print(f"error: --explain: {error}", file=sys.stderr)
        return 2
    except OutdatedReport as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(" ".join(f"{key}={value}" for key, value in summary.items()))
    for fmt, path in report_paths(settings.output, settings.format).items():
        print(f"{fmt}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
