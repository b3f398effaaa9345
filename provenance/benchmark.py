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
* ``--data DIR --survival``: where a watermark can still be found, and whether the check's shortcuts
  (:func:`provenance.watermark.check` skips the full-size decode where the mark cannot be) ever miss
  one: the ``ai`` files whose mark the full decode finds, re-encoded in each format, chroma
  subsampling and quality (and, re-marked as the SD scripts mark their outputs, at larger sizes and
  with the SDXL message), each read by the full decode and by the check; and the ``real`` photos,
  as they are, to count the full decodes the shortcuts save.
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
import sys
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
from provenance.watermark import (
    HALF_SCALE_MAX_ERRORS,
    MESSAGES,
    MIN_PIXELS,
    SD1,
    SDXL,
    Message,
    bit_errors,
    half_scale_bit_errors,
)


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


# ---- where the mark survives, and what the check's shortcuts skip ---------------------------------

#: (name, Pillow format, save options): the encodings a marked image is put through
ENCODINGS: list[tuple[str, str, dict[str, object]]] = [
    *((f"JPEG 4:2:0 q{q}", "JPEG", {"quality": q, "subsampling": 2}) for q in (100, 97, 95, 92, 90, 85, 80)),
    *((f"JPEG 4:2:2 q{q}", "JPEG", {"quality": q, "subsampling": 1}) for q in (95, 80, 70)),
    *((f"JPEG 4:4:4 q{q}", "JPEG", {"quality": q, "subsampling": 0}) for q in (90, 70)),
    ("WebP lossy q90", "WEBP", {"quality": 90}),
    ("WebP lossless", "WEBP", {"lossless": True}),
    ("PNG", "PNG", {}),
]


def _bgr(image: Image.Image) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])


def _found(errors: dict[Message, int], message: Message) -> bool:
    return errors[message] <= message.max_errors


def _mark(image: Image.Image, message: Message) -> Image.Image:
    """``image`` marked as the SD scripts mark their outputs (``invisible-watermark``, ``dwtDct``)."""
    from imwatermark import WatermarkEncoder

    encoder = WatermarkEncoder()
    encoder.set_watermark("bits", [int(bit) for bit in message.bits])
    return Image.fromarray(encoder.encode(_bgr(image), "dwtDct")[:, :, ::-1])


def marked_sets(files: list[Labelled], per_source: int, remarked: int) -> dict[str, list[tuple[Image.Image, Message]]]:
    """Marked images to re-encode: the ``ai`` files whose mark the full decode finds (``per_source`` of
    each source), and ``remarked`` of them upscaled and marked again, with each message, at larger sizes."""
    by_source: dict[str, list[tuple[Image.Image, Message]]] = defaultdict(list)
    for file in files:
        if file.label != AI or len(by_source[file.source]) >= per_source:
            continue
        image = Image.open(file.path).convert("RGB")
        if image.width * image.height < MIN_PIXELS:
            continue
        errors = bit_errors(_bgr(image))
        found = [message for message in MESSAGES if _found(errors, message)]
        if found:
            by_source[file.source].append((image, found[0]))
    sets: dict[str, list[tuple[Image.Image, Message]]] = {
        f"{source} (as found)": marked for source, marked in sorted(by_source.items()) if marked
    }
    originals = [image for marked in by_source.values() for image, _ in marked][:remarked]
    for size in ((1024, 1024), (2048, 1536)):
        for message in (SD1, SDXL):
            name = f"re-marked {message.name.split(' ')[0]}, {size[0]}x{size[1]}"
            sets[name] = [
                (_mark(image.resize(size, Image.Resampling.BICUBIC), message), message) for image in originals
            ]
    return sets


def survival(files: list[Labelled], per_source: int, remarked: int) -> None:
    """Per encoding: marks the full decode finds, and how many of those the check misses (must be 0)."""
    settings = ProvenanceSettings(time_budget=60, watermark_max_pixels=1 << 26)
    sets = marked_sets(files, per_source, remarked)
    limits = " / ".join(str(HALF_SCALE_MAX_ERRORS[m]) for m in MESSAGES)
    print(
        "Marked files put through each encoding: found by the full decode / files; check misses: marks the full\n"
        "decode finds that the check (with its shortcuts) does not report (must be 0); worst half-scale read of a\n"
        f"found mark, bit errors of 136 / 48 (4:2:0 JPEGs; the check rules out above {limits}):\n"
    )
    names = list(sets)
    print(_row(["encoding", *names, "check misses", "worst half-scale read"]))
    print("|---" * (len(names) + 3) + "|")
    for encoding, fmt, options in ENCODINGS:
        cells: list[object] = [encoding]
        misses = 0
        worst: dict[Message, int] = {}
        for name in names:
            found = 0
            for image, message in sets[name]:
                buffer = io.BytesIO()
                image.save(buffer, format=fmt, **options)
                data = buffer.getvalue()
                decoded = Image.open(io.BytesIO(data))
                if not _found(bit_errors(_bgr(decoded)), message):
                    continue
                found += 1
                if not [e for e in watermark.check(data, settings.watermark_max_pixels) if e.strong]:
                    misses += 1
                if fmt == "JPEG" and options.get("subsampling") == 2:
                    read = half_scale_bit_errors(Image.open(io.BytesIO(data)))[message]
                    worst[message] = max(worst.get(message, 0), read)
            cells.append(f"{found}/{len(sets[name])}")
        cells += [misses, " / ".join(str(worst.get(m, "-")) for m in MESSAGES)]
        print(_row(cells), flush=True)

    print("\nUnmarked photos (real), as they are: what the check does with each (watermark pixel cap")
    print(f"{ProvenanceSettings().watermark_max_pixels:,}), and the closest half-scale read of the 4:2:0 JPEGs:\n")
    outcomes: Counter[str] = Counter()
    closest: dict[Message, int] = {}
    cap = ProvenanceSettings().watermark_max_pixels
    for file in files:
        if file.label != REAL:
            continue
        data = file.path.read_bytes()
        outcomes[_path_taken(data, cap)] += 1
        image = Image.open(io.BytesIO(data))
        if watermark._is_420_upright(image) and MIN_PIXELS <= image.width * image.height <= cap:
            for message, count in half_scale_bit_errors(image).items():
                closest[message] = min(closest.get(message, count), count)
    print(_row(["what the check does", "real files"]))
    print("|---" * 2 + "|")
    for outcome, count in outcomes.most_common():
        print(_row([outcome, count]))
    print(
        "\nclosest half-scale read of an unmarked 4:2:0 JPEG: "
        + ", ".join(f"{closest[m]} of {len(m.bits)} ({m.name})" for m in MESSAGES if m in closest)
    )


def _path_taken(data: bytes, max_pixels: int) -> str:
    """Which way :func:`provenance.watermark.check` goes for this file (the same tests, in the same order)."""
    image = watermark._open(data)
    if image is None:
        return "not an image"
    if watermark._cannot_carry(image):
        return "ruled out by the header (no colour, or under 256x256)"
    if image.width * image.height > max_pixels:
        return "over the pixel cap: not checked"
    if watermark._is_420_upright(image):
        errors = half_scale_bit_errors(Image.open(io.BytesIO(data)))
        if all(errors[m] > HALF_SCALE_MAX_ERRORS[m] for m in MESSAGES):
            return "4:2:0 JPEG ruled out at half scale"
        return "4:2:0 JPEG, near a message at half scale: full decode"
    return "full decode (PNG, 4:4:4 or 4:2:2 JPEG, WebP, rotated ...)"


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
        sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
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


def real_files(
    folder: Path,
    bit_errors: bool,
    out: Path | None,
    limit: int | None,
    revision: str | None = None,
    per_source: int | None = None,
    remarked: int = 0,
) -> int:
    files = labelled_files(folder)
    if limit:
        files = files[:limit]
    if not files:
        print(f"no images under a folder named {' or '.join(CLASSES)} in {folder}")
        return 1
    if per_source is not None:
        survival(files, per_source, remarked)
        return 0
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
    parser.add_argument(
        "--survival",
        type=int,
        metavar="N",
        help="with --data: where the mark survives re-encoding, on N marked files per source; what the check skips",
    )
    parser.add_argument(
        "--remarked", type=int, default=20, help="with --survival: files upscaled and marked again at larger sizes"
    )
    parser.add_argument("--sides", type=int, nargs="+", default=[512, 1024, 2048], help="synthetic mode: image sides")
    parser.add_argument("--repeats", type=int, default=5, help="synthetic mode: runs per cell (median)")
    args = parser.parse_args(argv)
    if args.data is not None:
        return real_files(args.data, args.bit_errors, args.out, args.limit, args.against, args.survival, args.remarked)
    synthetic(args.sides, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
