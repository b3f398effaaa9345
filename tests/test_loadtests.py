"""The load tests and the baseline, on real processes: a short headless Locust run and the naive reference server."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from corpus import write_corpus
from helpers import make_image

from loadtests.servers import RunningServer, baseline
from loadtests.summary import read_summary


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few real image files, JPEG and PNG, of both kinds."""
    folder = tmp_path_factory.mktemp("load-images")
    for i, kind in enumerate(["ai", "real", "ai", "real"]):
        image = make_image(kind, 700 + i, (120 + 8 * i, 96))
        image.save(folder / f"{kind}_{i}.jpg", quality=90) if i % 2 else image.save(folder / f"{kind}_{i}.png")
    return folder


def test_headless_locust_run_writes_csv_and_summary(web_server: str, photos: Path, tmp_path: Path) -> None:
    output = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.run", "--target", "webapp", "--host", web_server, "--users", "2",
         "--duration", "4s", "--images", str(photos), "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("locust_stats.csv", "locust_stats_history.csv", "locust_failures.csv", "summary.txt"):
        assert (output / name).is_file(), name
    summary = read_summary(output / "locust_stats.csv")
    assert summary.requests > 0
    assert summary.failures == 0
    assert summary.p50_ms > 0 and summary.p99_ms >= summary.p50_ms
    assert json.loads((output / "summary.json").read_text())["requests"] == summary.requests
    text = (output / "summary.txt").read_text()
    assert "requests/s" in text and "p95" in text and "0 failed" in text
    assert text.strip() in result.stdout


def test_baseline_gives_the_web_apps_labels(trained_run: Path, web_server: str, photos: Path, tmp_path: Path) -> None:
    """The naive eager-PyTorch server and the ONNX web app, same checkpoint: same label, same probabilities."""
    spec = baseline(trained_run / "model.pt", threads=1)
    with RunningServer(spec, tmp_path / "baseline.log", sample_interval=0.1) as server:
        first = sorted(photos.iterdir())[0]
        cold_start = server.wait_first_answer((first.name, first.read_bytes()), timeout=120)
        for path in sorted(photos.iterdir()):
            files = {"files": (path.name, path.read_bytes())}
            ours = httpx.post(f"{spec.host}/predict", files=files, timeout=30).json()["results"][0]
            theirs = httpx.post(f"{web_server}/predict", files=files, timeout=30).json()["results"][0]
            assert ours["label"] == theirs["label"], (path.name, ours, theirs)
            for name, probability in theirs["probabilities"].items():
                assert ours["probabilities"][name] == pytest.approx(probability, abs=1e-4)
        assert cold_start > 0
        assert server.peak_megabytes > 50  # a Python process with torch and a model loaded
    assert server.process is not None and server.process.poll() is not None  # stopped on leaving the block


def test_short_soak_with_hostile_files_has_no_server_errors(exported_model: Path, photos: Path, tmp_path: Path) -> None:
    """make soak, briefly: photos and the hostile corpus mixed; no 5xx, the server alive, figures printed."""
    odd = tmp_path / "odd"
    write_corpus(odd)
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.soak", "--model", str(exported_model), "--images", str(photos),
         "--odd-files", str(odd), "--odd-share", "0.5", "--duration", "5s", "--users", "2",
         "--work-dir", str(tmp_path / "work")],
        capture_output=True,
        text=True,
        timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(next((tmp_path / "work" / "soak").glob("*/soak.json")).read_text())
    assert figures["server_errors"] == 0 and figures["server_alive"]
    assert figures["odd_files"] > 0 and figures["refused"] > 0 and figures["photos"] > 0
    assert "server errors   0" in result.stdout and "server memory" in result.stdout


def test_bench_rounds_summary_gives_the_evidence_share_round_by_round() -> None:
    from loadtests.bench import Row, format_summary, format_table

    def row(server: str, round_: int, cpu: float, per_second: float) -> Row:
        return Row(server, per_second, 100, 150, 200, 400, 0, 300, 1.0, cpu, round=round_)

    rows = [
        row("webapp-openvino", 1, 20.0, 50.0),
        row("webapp-provenance-openvino", 1, 25.0, 40.0),
        row("webapp-provenance-openvino", 2, 24.0, 45.0),
        row("webapp-openvino", 2, 21.0, 50.0),
    ]
    table = format_table(rows)
    assert table.splitlines()[2].startswith("| 1 | webapp-openvino |") and "| 25.0 |" in table
    summary = format_summary(rows)
    assert "| webapp-openvino | 2 | 50.0 | 20.5 | 20.0, 21.0 |" in summary
    # by CPU: 20/25 = 80.0 % and 21/24 = 87.5 %, median 83.75; by images/s: 80.0 % and 90.0 %
    assert "by CPU time per image 83.8 % (median; rounds: 80.0, 87.5)" in summary
    assert "by images/s 85.0 % (median; rounds: 80.0, 90.0)" in summary
    assert "webapp-provenance / webapp," not in summary  # no such pair measured


def test_evidence_cost_groups_files_by_what_the_watermark_check_does(photos: Path, tmp_path: Path) -> None:
    large = tmp_path / "large.jpg"
    make_image("real", 9, (1024, 768)).save(large, quality=90)  # 4:2:0, decoded at half scale for the model
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.evidence_cost", "--images", str(photos), "--images", str(large)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "| no colour or under 256x256: nothing decoded | 4 |" in result.stdout
    assert "| 4:2:0 JPEG, half-scale read; model at 1/2 (shared) | 1 |" in result.stdout
    assert "| all files | 5 |" in result.stdout


def test_half_scale_compares_the_models_answers_on_the_files_the_rule_changes(
    exported_model: Path, tmp_path: Path
) -> None:
    """Only 4:2:0 JPEGs within the cap that draft mode would reduce by 4 or more are read, both ways, by the model."""
    side = 4 * 96  # the test model's input is 96 px: draft mode would take a quarter from here
    rows = ["path,label"]
    for index, (kind, subsampling) in enumerate([("ai", 2), ("real", 2), ("ai", 0)]):
        image = make_image(kind, 30 + index, (side + 40, side))
        image.save(tmp_path / f"{index}.jpg", quality=90, subsampling=subsampling)
        rows.append(f"{index}.jpg,{kind}")
    make_image("real", 40, (side // 2, side // 2)).save(tmp_path / "small.jpg", quality=90)
    rows.append("small.jpg,real")
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.half_scale", "--manifest", str(tmp_path / "manifest.csv"),
         "--model", str(exported_model)],
        capture_output=True,
        text=True,
        check=True,
    )  # fmt: skip
    assert result.stdout.startswith("2 JPEGs within 4.2 MP")  # the 4:4:4 one and the small one are not changed
    assert "| half scale, then box-reduced |" in result.stdout
    assert "verdicts (ai / unsure / real) agree" in result.stdout


def test_request_cost_splits_a_requests_cpu_time_by_thread_group(exported_model: Path, tmp_path: Path) -> None:
    """The web app in the tool's own process, real requests: the decode and forward pass land in the web app's
    threads, the sender's time is shown apart; a missing file is a usage error, not a traceback."""
    photo = tmp_path / "photo.jpg"
    make_image("real", 50, (640, 480)).save(photo, quality=90)
    command = [sys.executable, "-m", "loadtests.request_cost", "--model", str(exported_model), "--warmup", "2"]
    result = subprocess.run(
        [*command, "--image", str(photo), "--requests", "40"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {}
    for line in result.stdout.splitlines():
        if match := re.fullmatch(r"\| \**([^|*]+?)\** \| \**([0-9.]+)\** \|", line):
            rows[match[1]] = float(match[2])
    groups = ["event loop", "request workers", "engine's own threads", "other Python threads"]
    assert set(groups) < set(rows) and rows["the web app, all threads"] > 0
    assert rows["the web app, all threads"] == pytest.approx(sum(rows[group] for group in groups), abs=0.02)
    missing = subprocess.run([*command, "--image", str(tmp_path / "none.jpg")], capture_output=True, text=True)
    assert missing.returncode == 2 and "pass --image FILE" in missing.stderr and "Traceback" not in missing.stderr
