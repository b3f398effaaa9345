"""``python -m provenance.benchmark``: what the provenance checks cost per image, by image size.

Prints milliseconds per image (median of ``--repeats`` runs) for each check alone and for
``inspect`` as a whole, on synthetic PNG and JPEG images made here (no data set needed).
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable

import numpy as np
from PIL import Image

from provenance import ProvenanceSettings, inspect
from provenance.inspection import CHECKS


def _image(side: int, fmt: str) -> bytes:
    rng = np.random.default_rng(side)
    y, x = np.mgrid[0:side, 0:side].astype(np.float32)
    pixels = np.stack([127 + 100 * np.sin(x / side * 3 + y / side * 2 + p) for p in (0, 1, 2)], axis=-1)
    pixels += rng.normal(0, 12, pixels.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format=fmt, quality=90)
    return buffer.getvalue()


def _median_ms(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up: imports, native libraries, caches
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return round(1000 * statistics.median(times), 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m provenance.benchmark", description=__doc__)
    parser.add_argument("--sides", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    settings = ProvenanceSettings(time_budget=60)
    names = [name for name, _ in CHECKS]
    print("| image | " + " | ".join(f"{name} ms" for name in names) + " | inspect() ms |")
    print("|---" * (len(names) + 2) + "|")
    for side in args.sides:
        for fmt in ("PNG", "JPEG"):
            data = _image(side, fmt)
            cells = [_median_ms(lambda c=check, d=data: c(d, settings), args.repeats) for _, check in CHECKS]
            total = _median_ms(lambda d=data: inspect(d, settings), args.repeats)
            print(f"| {side}x{side} {fmt} | " + " | ".join(map(str, cells)) + f" | {total} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
