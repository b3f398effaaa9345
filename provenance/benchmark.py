"""``python -m provenance.benchmark``: what the provenance checks find and what they cost.

Two modes:

* ``--data DIR``: every check over a labelled folder of real files (images under a folder named
  ``ai`` or ``real`` at any depth, e.g. ``DIR/ai/<source>/...``, the layout of realvsai-v1's
  originals). Prints, per evidence kind, the files where it was found on each label and the false
  positives (real photos with ``ai`` evidence, strong or weak), the files where the evidence decides
  the verdict, each check's time per image, and (``--bit-errors``) how far each image's decoded
  watermark is from each known message, per source: the measurements the tolerances were chosen
  from; ``--against REV`` times the watermark check of an earlier git revision against this one
  on the same files. Real generator outputs and camera files are the point: fixtures the tests
  make say nothing about what real tools write.
* without ``--data``: milliseconds per image (median of ``--repeats`` runs) for each check and for
  ``inspect`` as a whole, on synthetic PNG and JPEG images of ``--sides`` made here (no data needed).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import statistics
import subprocess
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from detector.labels import AI, CLASSES, REAL
from detector.preprocessing import ImageDecodeError, list_images, load_image
from provenance import ProvenanceSettings, combine, inspect, watermark
from provenance.evidence import Evidence
from provenance.inspection import CHECKS
from provenance.watermark import MESSAGES, MIN_PIXELS, bit_errors


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


def synthetic(sides: list[int], repeats: int) -> None:
    """The cost table by image size, on images made here."""
    settings = ProvenanceSettings(time_budget=60)
    names = [name for name, _ in CHECKS]
    print("| image | " + " | ".join(f"{name} ms" for name in names) + " | inspect() ms |")
    print("|---" * (len(names) + 2) + "|")
    for side in sides:
        for fmt in ("PNG", "JPEG"):
            data = _image(side, fmt)
            cells = [_median_ms(lambda c=check, d=data: c(d, settings), repeats) for _, check in CHECKS]
            total = _median_ms(lambda d=data: inspect(d, settings), repeats)
            print(f"| {side}x{side} {fmt} | " + " | ".join(map(str, cells)) + f" | {total} |")


# ---- real files ------------------------------------------------------------------------------------


@dataclass
class Labelled:
    path: Path
    label: str
    #: the folder right under the label folder (realvsai-v1: owner__repository), or "-"
    source: str


@dataclass
class Result:
    file: Labelled
    evidence: list[Evidence]
    verdict_source: str
    verdict: str
    #: seconds per check (CHECKS order) and for inspect() as a whole
    seconds: dict[str, float] = field(default_factory=dict)
    #: bit errors against each known watermark message (--bit-errors); empty when not decodable
    bit_errors: dict[str, int] = field(default_factory=dict)


def labelled_files(folder: Path) -> list[Labelled]:
    """Images under ``folder`` labelled by their nearest ancestor folder named ``ai`` or ``real``."""
    found = []
    for path in list_images(folder):
        parts = path.relative_to(folder).parts[:-1]
        for depth in range(len(parts) - 1, -1, -1):
            if parts[depth] in CLASSES:
                source = parts[depth + 1] if depth + 1 < len(parts) else "-"
                found.append(Labelled(path, parts[depth], source))
                break
    return found


def _timed(run: Callable[[], list[Evidence]]) -> tuple[list[Evidence], float]:
    started = time.perf_counter()
    evidence = run()
    return evidence, time.perf_counter() - started


def measure(file: Labelled, settings: ProvenanceSettings, with_bit_errors: bool) -> Result:
    """Each check alone (timed), then ``inspect`` as the service runs it (timed), on one file's bytes."""
    data = file.path.read_bytes()
    seconds = {}
    for name, check in CHECKS:
        _, seconds[name] = _timed(lambda c=check: c(data, settings))
    evidence, seconds["inspect()"] = _timed(lambda: inspect(data, settings))
    # the model's decision is not part of this benchmark: "model" means the evidence did not decide
    verdict = combine(evidence, "model")
    errors: dict[str, int] = {}
    if with_bit_errors:
        try:
            # the whole image, whatever the pixel cap: this measures, it does not decide
            image = load_image(data, max_pixels=1 << 40)
        except ImageDecodeError:
            image = None
        if image is not None and image.width * image.height >= MIN_PIXELS:
            bgr = np.ascontiguousarray(np.asarray(image)[:, :, ::-1])
            errors = {message.name: count for message, count in bit_errors(bgr).items()}
    return Result(file, evidence, verdict.source, verdict.label, seconds, errors)


def _row(cells: list[object]) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"


def _ms(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{1000 * statistics.median(values):.1f} / {1000 * statistics.fmean(values):.1f}"


def report(results: list[Result], settings: ProvenanceSettings) -> None:
    """The tables: evidence found per label, verdicts, time per check, and (when measured) bit errors."""
    totals = Counter(result.file.label for result in results)
    print(f"files: {totals[AI]} ai, {totals[REAL]} real (watermark pixel cap {settings.watermark_max_pixels:,})\n")

    found: dict[tuple[str, str, bool], Counter[str]] = defaultdict(Counter)
    for result in results:
        for key in {(item.kind, item.points_to, item.strong) for item in result.evidence}:
            found[key][result.file.label] += 1
    print("Evidence found (files; a real photo with evidence pointing to ai is a false positive):\n")
    print(_row(["kind", "points to", "strong", "ai files", "real files", "false positives on real"]))
    print("|---" * 6 + "|")
    for (kind, points_to, strong), counts in sorted(found.items()):
        false_positives = counts[REAL] if points_to == AI else "-"
        cells = [
            kind,
            points_to,
            "yes" if strong else "no",
            f"{counts[AI]}/{totals[AI]}",
            f"{counts[REAL]}/{totals[REAL]}",
        ]
        print(_row([*cells, false_positives]))

    decided: Counter[tuple[str, str]] = Counter(
        (result.file.label, result.verdict) for result in results if result.verdict_source == "evidence"
    )
    print("\nVerdict decided by the evidence (the rest is left to the model):\n")
    print(_row(["label", "decided ai", "decided real", "left to the model"]))
    print("|---" * 4 + "|")
    for label in CLASSES:
        left = totals[label] - decided[(label, AI)] - decided[(label, REAL)]
        print(_row([label, decided[(label, AI)], decided[(label, REAL)], left]))

    print("\nTime per image, ms (median / mean over the files; each check alone, then inspect() with all):\n")
    names = [name for name, _ in CHECKS] + ["inspect()"]
    print(_row(["label", *names]))
    print("|---" * (len(names) + 1) + "|")
    for label in CLASSES:
        mine = [result for result in results if result.file.label == label]
        print(_row([label, *(_ms([result.seconds[name] for result in mine]) for name in names)]))
    print(_row(["all", *(_ms([result.seconds[name] for result in results]) for name in names)]))

    by_source: dict[tuple[str, str], list[Result]] = defaultdict(list)
    for result in results:
        by_source[(result.file.label, result.file.source)].append(result)
    print("\nBy source: files with strong ai evidence, by kind\n")
    print(_row(["label", "source", "files", "strong ai evidence"]))
    print("|---" * 4 + "|")
    for (label, source), mine in sorted(by_source.items()):
        kinds = Counter(
            kind for result in mine for kind in {e.kind for e in result.evidence if e.points_to == AI and e.strong}
        )
        print(
            _row(
                [label, source, len(mine), ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items())) or "-"]
            )
        )

    if any(result.bit_errors for result in results):
        print("\nWatermark bit errors per message (whole image decoded, whatever the pixel cap):\n")
        header = ["label", "source", "decoded"]
        for message in MESSAGES:
            bits = len(message.bits)
            header += [f"{message.name} ({bits} bits): min / median", f"within {message.max_errors}"]
        print(_row(header))
        print("|---" * len(header) + "|")
        groups = sorted(by_source.items()) + [
            ((label, "all"), [r for r in results if r.file.label == label]) for label in CLASSES
        ]
        for (label, source), mine in groups:
            decoded = [result.bit_errors for result in mine if result.bit_errors]
            cells: list[object] = [label, source, len(decoded)]
            for message in MESSAGES:
                counts = [errors[message.name] for errors in decoded]
                if counts:
                    within = sum(count <= message.max_errors for count in counts)
                    cells += [f"{min(counts)} / {statistics.median(counts):g}", within]
                else:
                    cells += ["-", "-"]
            print(_row(cells))
        print("\nFiles within each tolerance (what the chosen one trades; * marks the one in use):\n")
        print(_row(["message", "tolerance (bits)", "ai files within", "real files within", "random pattern within"]))
        print("|---" * 5 + "|")
        for message in MESSAGES:
            length = len(message.bits)
            counts = {
                label: [r.bit_errors[message.name] for r in results if r.file.label == label and r.bit_errors]
                for label in CLASSES
            }
            tolerances = sorted(
                {round(length * share) for share in (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35)} | {message.max_errors}
            )
            for tolerance in tolerances:
                within = {label: sum(count <= tolerance for count in counts[label]) for label in CLASSES}
                rate = replace(message, max_errors=tolerance).false_positive_rate
                mark = "*" if tolerance == message.max_errors else ""
                print(
                    _row(
                        [
                            message.name,
                            f"{tolerance}{mark} of {length}",
                            *(f"{within[label]}/{len(counts[label])}" for label in CLASSES),
                            f"{rate:.1e}",
                        ]
                    )
                )


def _watermark_at(revision: str) -> Callable[[bytes, int], list[Evidence]]:
    """``provenance.watermark.check`` as it was at a git revision of this repository."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(
        ["git", "-C", str(root), "show", f"{revision}:provenance/watermark.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "watermark_at_revision.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location("watermark_at_revision", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module.check


def against(files: list[Labelled], revision: str, settings: ProvenanceSettings, rounds: int = 3) -> None:
    """The watermark check's time per image, this revision against ``revision``, on the same files.

    The two run interleaved, ``rounds`` times each per file (median), so that load from other jobs
    on the machine weighs on both alike.
    """
    before = _watermark_at(revision)
    cap = settings.watermark_max_pixels
    print(f"\nStable Diffusion watermark check, ms per image (mean / median over the files), {revision} against now:\n")
    print(_row(["label", "files", revision, "now", "now / before (total time)"]))
    print("|---" * 5 + "|")
    times: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for file in files:
        data = file.path.read_bytes()
        runs: dict[str, list[float]] = {"before": [], "now": []}
        for _ in range(rounds):
            for name, check in (("before", before), ("now", watermark.check)):
                started = time.perf_counter()
                check(data, cap)
                runs[name].append(time.perf_counter() - started)
        times[file.label].append((statistics.median(runs["before"]), statistics.median(runs["now"])))
    for label in CLASSES:
        pairs = times[label]
        if not pairs:
            continue
        old, new = [pair[0] for pair in pairs], [pair[1] for pair in pairs]
        cells = [
            f"{1000 * statistics.fmean(values):.1f} / {1000 * statistics.median(values):.1f}" for values in (old, new)
        ]
        print(_row([label, len(pairs), *cells, f"{sum(new) / sum(old):.3f}"]))


def real_files(folder: Path, bit_errors: bool, out: Path | None, limit: int | None, revision: str | None = None) -> int:
    files = labelled_files(folder)
    if limit:
        files = files[:limit]
    if not files:
        print(f"no images under a folder named {' or '.join(CLASSES)} in {folder}")
        return 1
    # a generous budget, so that a busy machine does not turn slow checks into "not checked"
    settings = ProvenanceSettings(time_budget=60)
    inspect(_image(256, "PNG"), settings)  # warm-up: imports, native libraries
    results = []
    for index, file in enumerate(files, 1):
        results.append(measure(file, settings, bit_errors))
        if index % 100 == 0:
            print(f"... {index}/{len(files)}", flush=True)
    if out is not None:
        with out.open("w") as stream:
            for result in results:
                record = {
                    "path": str(result.file.path),
                    "label": result.file.label,
                    "source": result.file.source,
                    "evidence": [item.to_dict() for item in result.evidence],
                    "verdict_source": result.verdict_source,
                    "ms": {name: round(1000 * value, 2) for name, value in result.seconds.items()},
                    "bit_errors": result.bit_errors,
                }
                stream.write(json.dumps(record) + "\n")
    report(results, settings)
    if revision is not None:
        against(files, revision, settings)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m provenance.benchmark", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, help="labelled folder of real files (images under ai/ and real/)")
    parser.add_argument(
        "--bit-errors", action="store_true", help="with --data: watermark bit errors per message and source"
    )
    parser.add_argument("--out", type=Path, help="with --data: write one JSON line per file here")
    parser.add_argument("--limit", type=int, help="with --data: only the first N files (sorted by path)")
    parser.add_argument(
        "--against", metavar="REV", help="with --data: time the watermark check of git revision REV against this one"
    )
    parser.add_argument("--sides", type=int, nargs="+", default=[512, 1024, 2048], help="synthetic mode: image sides")
    parser.add_argument("--repeats", type=int, default=5, help="synthetic mode: runs per cell (median)")
    args = parser.parse_args(argv)
    if args.data is not None:
        return real_files(args.data, args.bit_errors, args.out, args.limit, args.against)
    synthetic(args.sides, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
