"""The folder scanner: reports, resuming, bad files, and Ray Data giving the same answers."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import make_image, run_module, write_dataset

from detector.runtimes.onnx_runtime import OnnxDetector


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
        assert row["label"] == decision.label and row["error"] is None
        assert row["probabilities"]["ai"] == pytest.approx(decision.probabilities["ai"], abs=1e-6)
        assert row["model_version"] == "efficientnet_lite0-tiny"
    with out.with_suffix(".csv").open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [r["path"] for r in table] == [r["path"] for r in rows]
    assert list(table[0]) == [
        "path",
        "label",
        "confidence",
        "prob_ai",
        "prob_real",
        "evidence",
        "model_version",
        "error",
    ]
    assert "images=13" in result.stdout and "error=2" in result.stdout and "images_per_second=" in result.stdout
    html = out.with_suffix(".html").read_text()
    assert html.count("data:image/jpeg;base64,") == 11 and "broken.jpg" in html


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


def test_checkpoint_and_onnx_agree(folder: Path, trained_run: Path, exported_model: Path, tmp_path: Path) -> None:
    _scan(str(folder), "--model", str(exported_model), "--output", str(tmp_path / "onnx"), "--format", "jsonl")
    _scan(str(folder), "--model", str(trained_run / "model.pt"), "--output", str(tmp_path / "pt"), "--format", "jsonl")
    onnx_rows, pt_rows = _jsonl(tmp_path / "onnx.jsonl"), _jsonl(tmp_path / "pt.jsonl")
    for a, b in zip(onnx_rows, pt_rows, strict=True):
        assert (a["path"], a["label"], a["error"]) == (b["path"], b["label"], b["error"])
        if a["error"] is None:
            assert a["probabilities"]["ai"] == pytest.approx(b["probabilities"]["ai"], abs=1e-4)


def test_usage_errors_exit_non_zero(exported_model: Path, tmp_path: Path) -> None:
    for args in (
        [],
        [str(tmp_path / "missing")],
        [str(tmp_path), "--model", str(tmp_path / "none.onnx")],
        [str(tmp_path), "--model", str(exported_model), "--format", "xml"],
    ):
        result = subprocess.run([sys.executable, "-m", "scan", *args], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, args
        assert result.stderr.startswith("error:") and "Traceback" not in result.stderr


def test_ray_data_pipeline_gives_the_cli_results(folder: Path, exported_model: Path, tmp_path: Path) -> None:
    import pandas as pd

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
    answered = cli_rows["error"] == ""
    np.testing.assert_allclose(
        ray_rows["prob_ai"][answered].astype(float), cli_rows["prob_ai"][answered].astype(float), atol=1e-6
    )
    assert ray_rows["error"].notna().sum() == 2
