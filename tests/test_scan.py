"""The folder scanner: reports, resuming, bad files, heatmaps, the consistency check, and Ray Data alike."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import make_image, run_module, write_dataset
from PIL import Image
from provenance_files import a1111_png, encode, txt2img_png

from detector.calibration import decide
from detector.consistency import VARIANTS, reconcile, variant_arrays
from detector.heatmap import overlay
from detector.preprocessing import load_image
from detector.runtimes import open_detector
from detector.runtimes.onnx_runtime import OnnxDetector, available_providers
from provenance import combine, inspect


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Labelled images in nested folders, plus files that are not images."""
    root = write_dataset(tmp_path / "photos", per_class=5)
    nested = root / "real" / "2024" / "trip"
    nested.mkdir(parents=True)
    make_image("real", 77, (1600, 1200)).save(nested / "big.jpg", quality=90)
    (root / "ai" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "ai" / "notes.txt").write_text("ignored: not an image suffix")
    (root / "empty.png").write_bytes(b"")
    return root


def _scan(*args: str) -> subprocess.CompletedProcess[str]:
    return run_module("scan", *args)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_scan_writes_reports_matching_the_model(folder: Path, exported_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = _scan(str(folder), "--model", str(exported_model), "--output", str(out), "--html", "--workers", "2")
    rows = _jsonl(out.with_suffix(".jsonl"))
    assert len(rows) == 10 + 1 + 1 + 1  # 10 labelled, big.jpg, broken.jpg, empty.png; notes.txt is no image
    by_name = {Path(r["path"]).name: r for r in rows}
    assert "notes.txt" not in by_name
    assert by_name["broken.jpg"]["error"] and by_name["empty.png"]["error"] == "the file is empty"
    detector = OnnxDetector(exported_model)
    for name in ("ai_000.jpg", "real_001.png", "big.jpg"):
        row = by_name[name]
        decision = detector.classify(detector.preprocess(Path(row["path"]))[None])[0]
        assert (row["label"], row["summary"], row["reason"]) == (decision.label, decision.summary, None)
        assert row["label"] in ("ai", "real", "unsure") and row["error"] is None and "confidence" not in row
        # the scan's engine is OpenVINO where installed (--engine auto): ONNX Runtime's answers within float rounding
        assert row["p_ai"] == pytest.approx(decision.p_ai, abs=1e-5)
        assert row["probabilities"]["ai"] == pytest.approx(decision.probabilities["ai"], abs=1e-5)
        assert row["model_version"] == "efficientnet_lite0-tiny" and row["heatmap"] is None
    with out.with_suffix(".csv").open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [r["path"] for r in table] == [r["path"] for r in rows]
    assert list(table[0]) == [
        "path",
        "label",
        "p_ai",
        "summary",
        "reason",
        "evidence",
        "heatmap",
        "model_version",
        "error",
    ]
    assert [(r["label"], r["summary"]) for r in table] == [(r["label"] or "", r["summary"] or "") for r in rows]
    assert "images=13" in result.stdout and "error=2" in result.stdout and "images_per_second=" in result.stdout
    html = out.with_suffix(".html").read_text()
    assert html.count("data:image/jpeg;base64,") == 11 and "broken.jpg" in html
    for row in rows:  # each verdict in words, coloured by its label
        if row["error"] is None:
            assert f'<span class="{row["label"]}">{row["summary"]}</span>' in html
    assert "Confidence" not in html and "Heatmap" not in html


def test_rerun_resumes_and_threshold_overrides(folder: Path, exported_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    _scan(str(folder / "ai"), "--model", str(exported_model), "--output", str(out), "--format", "jsonl")
    first = _jsonl(out.with_suffix(".jsonl"))
    result = _scan(str(folder), "--model", str(exported_model), "--output", str(out), "--format", "jsonl")
    rows = _jsonl(out.with_suffix(".jsonl"))
    assert rows[: len(first)] == first  # nothing scanned twice
    assert len(rows) == 13 and f"skipped_as_done={len(first)}" in result.stdout
    assert not out.with_suffix(".csv").exists()

    everything_ai = tmp_path / "strict"
    _scan(str(folder), "--model", str(exported_model), "--output", str(everything_ai), "--threshold", "0")
    labels = {r["label"] for r in _jsonl(everything_ai.with_suffix(".jsonl")) if r["error"] is None}
    assert labels == {"ai"}

    # both thresholds overridden: ai from 1 (none), real at or below 0 (none): every verdict is unsure
    undecided = tmp_path / "undecided"
    args = ["--output", str(undecided), "--threshold", "1", "--real-threshold", "0", "--format", "csv"]
    _scan(str(folder), "--model", str(exported_model), *args)
    with undecided.with_suffix(".csv").open(newline="") as handle:
        table = [row for row in csv.DictReader(handle) if not row["error"]]
    assert {row["label"] for row in table} == {"unsure"}
    assert all(row["summary"] == f"P(AI) {100 * float(row['p_ai']):.0f} %: unsure" for row in table)


def test_resume_across_report_versions(folder: Path, exported_model: Path, tmp_path: Path) -> None:
    """A JSONL report of an earlier version resumes; a CSV with other columns is refused, not garbled."""
    old = tmp_path / "old"
    path = str((folder / "ai" / "ai_000.jpg").resolve())
    legacy = {"path": path, "label": "ai", "confidence": 0.7, "probabilities": {"ai": 0.7, "real": 0.3}}
    old.with_suffix(".jsonl").write_text(json.dumps({**legacy, "evidence": "", "model_version": "v0"}) + "\n")
    result = _scan(str(folder), "--model", str(exported_model), "--output", str(old), "--format", "jsonl", "--html")
    assert "skipped_as_done=1" in result.stdout and "images=13" in result.stdout
    assert '<span class="ai">P(AI) 70 %: ai</span>' in old.with_suffix(".html").read_text()

    old.with_suffix(".csv").write_text("path,label,confidence,prob_ai,prob_real,evidence,model_version,error\n")
    refused = run_module("scan", str(folder), "--model", str(exported_model), "--output", str(old), returncode=2)
    assert "columns of an earlier version" in refused.stderr and "--no-resume" in refused.stderr


def test_checkpoint_and_onnx_agree(folder: Path, trained_run: Path, exported_model: Path, tmp_path: Path) -> None:
    _scan(str(folder), "--model", str(exported_model), "--output", str(tmp_path / "onnx"), "--format", "jsonl")
    _scan(str(folder), "--model", str(trained_run / "model.pt"), "--output", str(tmp_path / "pt"), "--format", "jsonl")
    onnx_rows, pt_rows = _jsonl(tmp_path / "onnx.jsonl"), _jsonl(tmp_path / "pt.jsonl")
    for a, b in zip(onnx_rows, pt_rows, strict=True):
        assert (a["path"], a["label"], a["error"]) == (b["path"], b["label"], b["error"])
        if a["error"] is None:
            assert a["probabilities"]["ai"] == pytest.approx(b["probabilities"]["ai"], abs=1e-4)


def test_engines_give_the_same_answers(folder: Path, exported_model: Path, tmp_path: Path) -> None:
    """``--engine onnxruntime`` and ``--engine openvino`` (auto's choice where installed) scan alike."""
    pytest.importorskip("openvino")
    reports = {}
    for engine in ("onnxruntime", "openvino"):
        out = tmp_path / engine
        _scan(
            str(folder), "--model", str(exported_model), "--output", str(out), "--format", "jsonl", "--engine", engine
        )
        reports[engine] = _jsonl(out.with_suffix(".jsonl"))
    for a, b in zip(reports["onnxruntime"], reports["openvino"], strict=True):
        same = ("path", "label", "error", "model_version")
        assert [a[key] for key in same] == [b[key] for key in same]
        if a["error"] is None:
            assert a["p_ai"] == pytest.approx(b["p_ai"], abs=1e-5)


def test_usage_errors_exit_non_zero(exported_model: Path, tmp_path: Path) -> None:
    cases = [
        [],
        [str(tmp_path / "missing")],
        [str(tmp_path), "--model", str(tmp_path / "none.onnx")],
        [str(tmp_path), "--model", str(exported_model), "--format", "xml"],
    ]
    if "CUDAExecutionProvider" not in available_providers():  # an engine not installed here is named
        cases.append([str(tmp_path), "--model", str(exported_model), "--device", "cuda"])
    for args in cases:
        result = subprocess.run([sys.executable, "-m", "scan", *args], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, args
        assert result.stderr.startswith("error:") and "Traceback" not in result.stderr


def test_ray_data_pipeline_gives_the_cli_results(folder: Path, exported_model: Path, tmp_path: Path) -> None:
    import pandas as pd

    (folder / "ai" / "txt2img.png").write_bytes(txt2img_png())  # evidence that reads pixels (the SD watermark)
    _scan(str(folder), "--model", str(exported_model), "--output", str(tmp_path / "cli"), "--format", "csv")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "scan.ray_pipeline",
            str(folder),
            "--model",
            str(exported_model),
            "--output",
            str(tmp_path / "parquet"),
            "--actors",
            "2",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    ray_rows = pd.read_parquet(tmp_path / "parquet").sort_values("path").reset_index(drop=True)
    cli_rows = pd.read_csv(tmp_path / "cli.csv", keep_default_na=False).sort_values("path").reset_index(drop=True)
    assert list(ray_rows["path"]) == list(cli_rows["path"])
    assert list(ray_rows["label"].fillna("")) == list(cli_rows["label"])
    assert list(ray_rows["summary"].fillna("")) == list(cli_rows["summary"])
    answered = cli_rows["error"] == ""
    np.testing.assert_allclose(
        ray_rows["p_ai"][answered].astype(float), cli_rows["p_ai"][answered].astype(float), atol=1e-6
    )
    assert list(ray_rows["evidence"].fillna("")) == list(cli_rows["evidence"])
    marked = ray_rows[ray_rows["path"].str.endswith("txt2img.png")]["evidence"].item()
    assert "Stable Diffusion invisible watermark" in marked
    assert ray_rows["error"].notna().sum() == 2


def test_explain_writes_a_heatmap_per_image_linked_from_the_report(
    folder: Path, exported_model: Path, tmp_path: Path
) -> None:
    out, heatmaps = tmp_path / "report", tmp_path / "heatmaps"
    args = ["--model", str(exported_model), "--output", str(out), "--html", "--explain", str(heatmaps)]
    _scan(str(folder), *args, "--format", "jsonl")
    rows = _jsonl(out.with_suffix(".jsonl"))
    detector = OnnxDetector(exported_model)
    html = out.with_suffix(".html").read_text()
    assert "Heatmap" in html
    for row in rows:
        if row["error"] is not None:
            assert row["heatmap"] is None
            continue
        picture = Path(row["heatmap"])
        assert picture.parent == heatmaps.resolve() and picture.suffix == ".png"
        assert f'href="heatmaps/{picture.name}"' in html
        # the verdict is the one without --explain (one forward pass gives both)
        decisions, cam = detector.explain(detector.preprocess(Path(row["path"]))[None])
        assert row["label"] == decisions[0].label and row["p_ai"] == pytest.approx(decisions[0].p_ai, abs=1e-6)
        drawn = Image.open(picture)
        if Path(row["path"]).name == "big.jpg":  # 1600 x 1200, drawn at 512 px a side at most
            image = load_image(row["path"], draft_size=512)
            image.thumbnail((512, 512))
            assert drawn.size == image.size == (512, 384)
            expected = np.asarray(overlay(image, cam[0]), dtype=int)
            assert np.abs(np.asarray(drawn, dtype=int) - expected).max() <= 2
    assert sorted(p.name for p in heatmaps.iterdir()) == sorted(Path(r["heatmap"]).name for r in rows if r["heatmap"])


def test_consistency_turns_a_verdict_that_flips_into_unsure(folder: Path, exported_model: Path, tmp_path: Path) -> None:
    """With the ai threshold between a file's P(ai) and a re-encoded copy's, --consistency says unsure and why."""
    detector = OnnxDetector(exported_model)
    classes = detector.metadata.classes
    files = [
        folder / "ai" / "ai_000.jpg",
        folder / "real" / "real_001.png",
        folder / "real" / "2024" / "trip" / "big.jpg",
    ]

    def p_ai(batch: np.ndarray) -> np.ndarray:
        return detector.probabilities(batch)[:, classes.index("ai")]

    own = {path: p_ai(detector.preprocess(path)[None])[0] for path in files}
    variants = {path: p_ai(variant_arrays(detector, path)) for path in files}
    # the file and variant whose P(ai) differ most, and a threshold halfway between the two (no unsure band)
    path, which = max(
        ((path, index) for path in files for index in range(len(VARIANTS))),
        key=lambda pair: abs(variants[pair[0]][pair[1]] - own[pair[0]]),
    )
    assert abs(variants[path][which] - own[path]) > 1e-4
    threshold = float((own[path] + variants[path][which]) / 2)
    flags = ["--model", str(exported_model), "--format", "jsonl", "--threshold", repr(threshold)]
    flags += ["--real-threshold", "1"]
    _scan(*map(str, files), *flags, "--output", str(tmp_path / "plain"))
    _scan(*map(str, files), *flags, "--output", str(tmp_path / "checked"), "--consistency")
    plain = {Path(r["path"]).name: r for r in _jsonl(tmp_path / "plain.jsonl")}
    checked = {Path(r["path"]).name: r for r in _jsonl(tmp_path / "checked.jsonl")}
    for file in files:
        decision = decide(detector.probabilities(detector.preprocess(file)[None]), classes, threshold, 1.0)[0]
        others = decide(detector.probabilities(variant_arrays(detector, file)), classes, threshold, 1.0)
        expected = reconcile(decision, others)
        row = checked[file.name]
        assert (row["label"], row["summary"], row["reason"]) == (expected.label, expected.summary, expected.reason)
        assert plain[file.name]["label"] == decision.label and plain[file.name]["reason"] is None
        assert row["p_ai"] == plain[file.name]["p_ai"]  # the number stays the file's own
    flipped = checked[path.name]
    assert flipped["label"] == "unsure" and plain[path.name]["label"] in ("ai", "real")
    assert list(VARIANTS)[which] in flipped["reason"] and "changes when the image is re-saved" in flipped["reason"]


#: the scanner's command line in a process that counts the pixel decodes Pillow does (its ImageFile.load with
#: tiles still to decode), printed at the end: how often each file was decoded, by the model or the evidence
COUNTING_SCAN = """
import sys
from PIL import ImageFile
from scan.cli import main

decodes = []
load = ImageFile.ImageFile.load

def counting(self):
    if self.tile:
        decodes.append(1)
    return load(self)

ImageFile.ImageFile.load = counting
code = main(sys.argv[1:])
print(f"pixel_decodes={len(decodes)}")
sys.exit(code)
"""


def test_evidence_reads_the_models_decode_instead_of_decoding_again(exported_model: Path, tmp_path: Path) -> None:
    """With evidence on, a file the model decodes at the scale the watermark check reads is decoded once: the
    check reads the model's decode (every pixel of a PNG; half scale of a 4:2:0 JPEG whose shorter side is 2-4x
    the model's input). The model's input is what it is with the evidence off, and the evidence what the file
    alone gives (provenance.inspect)."""
    detector = open_detector(exported_model, engine="auto")  # the scan's engine (engines agree: a test above)
    side = detector.preprocess_config.input_size  # draft mode decodes at the largest scale that keeps this size
    photos = tmp_path / "photos"
    photos.mkdir()
    marked = Image.open(io.BytesIO(txt2img_png((4 * side, 3 * side)))).convert("RGB")
    files = {
        "marked.png": txt2img_png(),  # model: every pixel; the mark's full decode reads it
        "a1111.png": a1111_png(),  # the same, with generator settings in a text chunk
        # model and check: half scale
        "photo.jpg": encode(make_image("real", 3, (4 * side, 3 * side)), "JPEG", quality=90),
        # the model's half-scale decode serves the check's half-scale read; the mark's full decode is its own
        "marked_q100.jpg": encode(marked, "JPEG", quality=100, subsampling=2),
        # over the watermark's pixel cap (2048 x 2048): the model at an eighth, nothing read for the mark
        "big.jpg": encode(make_image("real", 4, (2400, 1800)), "JPEG", quality=90),
    }
    for name, data in files.items():
        (photos / name).write_bytes(data)
    script = tmp_path / "counting_scan.py"
    script.write_text(COUNTING_SCAN)

    def scan(output: str, *flags: str) -> tuple[dict[str, dict], int]:
        args = [str(photos), "--model", str(exported_model), "--output", str(tmp_path / output), "--format", "jsonl"]
        result = subprocess.run(
            [sys.executable, str(script), *args, *flags], capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr[-3000:]
        decodes = int(result.stdout.rsplit("pixel_decodes=", 1)[1].split()[0])
        return {Path(r["path"]).name: r for r in _jsonl(tmp_path / f"{output}.jsonl")}, decodes

    with_evidence, decodes_with = scan("evidence")
    without, decodes_without = scan("plain", "--no-evidence")
    assert decodes_without == len(files)
    # only marked_q100.jpg's full decode is the evidence's own (6 decodes of its own before it read the model's,
    # and 2 before the model decoded JPEGs within the cap at half scale at most)
    assert decodes_with == len(files) + 1
    for name, data in files.items():
        row, plain = with_evidence[name], without[name]
        decision = detector.classify(detector.preprocess(data)[None])[0]
        assert row["p_ai"] == plain["p_ai"] == pytest.approx(decision.p_ai, abs=1e-6), name
        assert row["evidence"] == combine(inspect(data), decision).summary(), name
        assert plain["evidence"] == ""
    for name in ("marked.png", "marked_q100.jpg"):
        assert "Stable Diffusion invisible watermark" in with_evidence[name]["evidence"], name
