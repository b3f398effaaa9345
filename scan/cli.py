"""``detector-scan``: score folders of images through ONNX Runtime (or a checkpoint) with a progress bar and reports."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice

from pydantic import ValidationError
from pydantic_settings import CliApp
from tqdm import tqdm

from detector.runtimes import Detector, open_detector
from provenance import Evidence, ProvenanceSettings
from scan.config import ScanSettings
from scan.files import expand
from scan.reports import ReportWriter, report_paths, summarise, write_html
from scan.scoring import Decoded, prepare, score


def _batches(paths: list[str], size: int) -> Iterator[list[str]]:
    iterator = iter(paths)
    while batch := list(islice(iterator, size)):
        yield batch


def run_scan(settings: ScanSettings) -> dict[str, float]:
    """Scan, write the reports, and return the summary (counts per label, errors, images/s)."""
    detector: Detector = open_detector(settings.model, threads=settings.threads)
    writer = ReportWriter(settings.output, settings.format, resume=settings.resume)
    done = {row.path for row in writer.rows()}
    todo = [path for path in expand(settings.inputs, settings.paths_from) if path not in done]
    provenance = ProvenanceSettings() if settings.evidence else None
    started = time.perf_counter()
    with ThreadPoolExecutor(settings.workers) as pool, tqdm(total=len(todo), unit="img", desc="scan") as bar:

        def submit(batch: list[str]) -> list[Future[tuple[Decoded, list[Evidence]]]]:
            return [pool.submit(prepare, detector, path, settings.max_pixels, provenance) for path in batch]

        batches = _batches(todo, settings.batch_size)
        current = next(batches, None)
        pending = submit(current) if current else []
        while current:
            upcoming = next(batches, None)
            # decode the next batch while this one runs through the model
            following = submit(upcoming) if upcoming else []
            prepared = [future.result() for future in pending]
            decoded, evidence = [item for item, _ in prepared], [found for _, found in prepared]
            rows = score(detector, current, decoded, settings.threshold, evidence)
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
    print(" ".join(f"{key}={value}" for key, value in summary.items()))
    for fmt, path in report_paths(settings.output, settings.format).items():
        print(f"{fmt}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
