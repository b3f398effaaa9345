"""A real TorchServe (Java frontend + Python workers) serving the tiny trained model.

One server per session, on free loopback ports, started with the committed config.properties (its
TS_* environment overrides move the ports) and the archives built by ``python -m handlers.archive``.
The second model version is registered into the same server. The server's log is printed when a
check fails, and kept under the session's temporary folder.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import matplotlib
import numpy as np
import pytest
import yaml
from corpus import hostile_corpus
from helpers import make_image, run_module
from PIL import Image
from provenance_files import a1111_png, encode, txt2img_png
from web_process import live_web_server, running_web_server

from detector.calibration import Decision
from detector.consistency import check_consistency
from detector.heatmap import HEATMAP_SIDE, heatmap_data_uri
from detector.labels import AI
from detector.runtimes.onnx_runtime import OnnxDetector
from detector.runtimes.torch_eager import TorchDetector
from handlers.local_server import LocalTorchServe
from provenance import combine, inspect

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 1e-5
VERDICTS = ("ai", "real", "unsure")

JAVA_MISSING = shutil.which("java") is None and not os.environ.get("JAVA_HOME")


@dataclass
class TorchServe:
    inference: str
    management: str
    metrics: str
    grpc: str
    workdir: Path
    log: Path

    def token(self, kind: str) -> str:
        return json.loads((self.workdir / "key_file.json").read_text())[kind]["key"]

    def headers(self, kind: str = "inference") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(kind)}"}

    def log_tail(self, chars: int = 4000) -> str:
        return "\n--- TorchServe log (tail) ---\n" + self.log.read_text(errors="replace")[-chars:]

    def cli_args(self) -> list[str]:
        """Connection flags for python -m handlers.manage / handlers.grpc_client."""
        return [
            "--management-url",
            self.management,
            "--grpc-inference-address",
            self.grpc,
            "--key-file",
            str(self.workdir / "key_file.json"),
        ]


def _jpeg_and_png(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    jpeg, png = folder / "photo.jpg", folder / "render.png"
    make_image("real", 501, (120, 90)).save(jpeg, quality=90)
    make_image("ai", 502, (100, 100)).save(png)
    return [jpeg, png]


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return _jpeg_and_png(tmp_path_factory.mktemp("ts-images"))


@pytest.fixture(scope="session")
def model_store(trained_run: Path, exported_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """detector.mar (the ONNX model, version 1.0) and detector-v2.mar (the eager checkpoint, version 2.0)."""
    store = tmp_path_factory.mktemp("model_store")
    run_module("handlers.archive", "--model", str(exported_model), "--output", str(store / "detector.mar"))
    run_module(
        "handlers.archive",
        "--model",
        str(trained_run / "model.pt"),
        "--output",
        str(store / "detector-v2.mar"),
        "--version",
        "2.0",
    )
    return store


@pytest.fixture(scope="session")
def torchserve(
    model_store: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[TorchServe]:
    if JAVA_MISSING:
        pytest.skip("TorchServe needs Java 17: no java on PATH and no JAVA_HOME")
    plan = LocalTorchServe(model_store, tmp_path_factory.mktemp("torchserve"))
    plan.prepare()
    env = {**os.environ, **plan.env()}
    log = plan.work_dir / "torchserve.log"
    with log.open("w") as handle:
        process = subprocess.Popen(
            plan.command(), cwd=plan.work_dir, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = TorchServe(
        inference=plan.inference_url,
        management=plan.management_url,
        metrics=plan.metrics_url,
        grpc=plan.grpc_address,
        workdir=plan.work_dir,
        log=log,
    )
    try:
        _wait_until_ready(server, process)
        yield server
    finally:
        if request.session.testsfailed:
            sys.stderr.write(f"\nTorchServe's log is kept at {log}{server.log_tail()}\n")
        subprocess.run(plan.stop_command(), env=env, cwd=plan.work_dir, capture_output=True, timeout=60)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # our own session: the launcher, Java and its workers
            process.wait(timeout=10)


def _wait_until_ready(server: TorchServe, process: subprocess.Popen[bytes], timeout: float = 90) -> None:
    """The key file is written, /ping answers and the default model has a READY worker."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"TorchServe exited with {process.returncode}" + server.log_tail())
        try:
            if (server.workdir / "key_file.json").is_file():
                ping = httpx.get(f"{server.inference}/ping", headers=server.headers(), timeout=2)
                described = httpx.get(f"{server.management}/models/detector", headers=server.headers("management"))
                if ping.status_code == 200 and described.status_code == 200:
                    workers = described.json()[0]["workers"]
                    if any(worker["status"] == "READY" for worker in workers):
                        return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    raise RuntimeError("TorchServe did not become ready" + server.log_tail())


def _predict(server: TorchServe, data: bytes, path: str = "/predictions/detector") -> httpx.Response:
    return httpx.post(f"{server.inference}{path}", content=data, headers=server.headers(), timeout=60)


def _metrics(server: TorchServe) -> dict[str, float]:
    """Prometheus text -> {'name{labels}': value}."""
    text = httpx.get(f"{server.metrics}/metrics", timeout=10).text
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def _assert_same_answer(answer: dict, expected_probabilities: np.ndarray, classes: list[str], log: str = "") -> None:
    got = np.array([answer["probabilities"][name] for name in classes])
    assert np.abs(got - expected_probabilities).max() < TOLERANCE, f"{answer} vs {expected_probabilities}{log}"
    # the number that goes with every verdict is P(ai), never the probability of the label given
    assert answer["p_ai"] == pytest.approx(answer["probabilities"]["ai"])
    assert answer["summary"] == f"P(AI) {100 * answer['p_ai']:.0f} %: {answer['label']}"
    assert "confidence" not in answer


def test_archive_holds_model_handler_core_and_config(model_store: Path, exported_model: Path) -> None:
    with zipfile.ZipFile(model_store / "detector.mar") as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("MAR-INF/MANIFEST.json"))
    assert {exported_model.name, "torchserve_handler.py", "model-config.yaml", "detector/preprocessing.py"} <= names
    assert {"provenance/inspection.py", "provenance/verdict.py"} <= names
    assert {"detector/calibration.py", "detector/runtimes/onnx_runtime.py", "detector/runtimes/torch_eager.py"} <= names
    assert not any("__pycache__" in name for name in names)
    assert manifest["model"] == {
        "modelName": "detector",
        "serializedFile": exported_model.name,
        "handler": "torchserve_handler.py",
        "modelVersion": "1.0",
        "configFile": "model-config.yaml",
    }


def test_ping_is_healthy(torchserve: TorchServe) -> None:
    response = httpx.get(f"{torchserve.inference}/ping", headers=torchserve.headers(), timeout=5)
    assert response.status_code == 200
    assert response.json() == {"status": "Healthy"}


def test_requests_without_the_token_are_refused(torchserve: TorchServe, images: list[Path]) -> None:
    data = images[0].read_bytes()
    for headers in ({}, {"Authorization": "Bearer not-the-token"}, torchserve.headers("management")):
        response = httpx.post(f"{torchserve.inference}/predictions/detector", content=data, headers=headers)
        # TorchServe 0.12 answers a missing or wrong token with 400 InvalidKeyException
        assert response.status_code == 400, response.text
        assert response.json()["type"] == "InvalidKeyException"
    assert httpx.get(f"{torchserve.management}/models").status_code == 400
    assert httpx.get(f"{torchserve.management}/models", headers=torchserve.headers("management")).status_code == 200


def test_rest_answers_equal_the_in_process_model(
    torchserve: TorchServe, images: list[Path], exported_model: Path
) -> None:
    detector = OnnxDetector(exported_model)
    for path in images:  # a JPEG and a PNG
        response = _predict(torchserve, path.read_bytes())
        assert response.status_code == 200, response.text + torchserve.log_tail()
        answer = response.json()
        batch = detector.preprocess(path.read_bytes())[None]
        expected = detector.probabilities(batch)[0]
        decision = detector.classify(batch)[0]
        _assert_same_answer(answer, expected, detector.metadata.classes)
        assert answer["label"] == decision.label
        assert answer["model_version"] == detector.version
        assert (answer["archive_version"], answer["runtime"]) == ("1.0", "onnxruntime")


def test_concurrent_requests_are_answered_in_batches(torchserve: TorchServe, images: list[Path]) -> None:
    payloads = [path.read_bytes() for path in images] * 8
    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(lambda data: _predict(torchserve, data), payloads))
    assert [r.status_code for r in responses] == [200] * 16, torchserve.log_tail()
    # same file, same answer, whichever batch it landed in
    assert len({json.dumps(r.json(), sort_keys=True) for r in responses[0::2]}) == 1
    # the handler counts its batches by size: TorchServe handed it more than one request at once
    sizes = {
        int(match.group(1)): count
        for name, count in _metrics(torchserve).items()
        if (match := re.match(r'HandlerBatches\{.*BatchSize="(\d+)"', name))
    }
    assert max(sizes) > 1, f"batch sizes seen by the handler: {sizes}" + torchserve.log_tail()


def test_a_bad_file_in_a_batch_gets_its_own_error(torchserve: TorchServe, images: list[Path]) -> None:
    """Refusals answered with their own status beside answered images, in the same handler batch."""
    good = images[0].read_bytes()
    bad = {"not_an_image": (b"this is not an image", 415), "empty": (b"", 422), "truncated": (good[:300], 422)}
    mixed = [good, bad["not_an_image"][0], good, bad["empty"][0], good, bad["truncated"][0], good, good]
    for _ in range(5):  # until one handler batch held both kinds (TorchServe decides how it batches)
        with ThreadPoolExecutor(max_workers=len(mixed)) as pool:
            responses = list(pool.map(lambda data: _predict(torchserve, data), mixed))
        for data, response in zip(mixed, responses, strict=True):
            if data == good:
                assert response.status_code == 200 and response.json()["label"] in VERDICTS
            else:
                code, status = next((c, s) for c, (d, s) in bad.items() if d == data)
                assert response.status_code == status, response.text
                error = response.json()["error"]  # the web app's one error shape
                assert error["code"] == code and error["status"] == status and error["message"]
        mixed_batches = [
            (int(answered), int(refused))
            for answered, refused in re.findall(
                r"batch of \d+: (\d+) answered, (\d+) refused", torchserve.log.read_text()
            )
        ]
        if any(answered and refused for answered, refused in mixed_batches):
            return
    pytest.fail(f"no handler batch held both good and bad files: {mixed_batches}" + torchserve.log_tail())


def test_metrics_report_requests_latencies_and_labels(torchserve: TorchServe, images: list[Path]) -> None:
    def total(samples: dict[str, float], prefix: str) -> float:
        return sum(value for name, value in samples.items() if name.startswith(prefix))

    before = _metrics(torchserve)
    for path in images:
        assert _predict(torchserve, path.read_bytes()).status_code == 200
    after = _metrics(torchserve)
    assert total(after, "ts_inference_requests_total{") - total(before, "ts_inference_requests_total{") == 2
    assert total(after, "ts_inference_latency_microseconds{") > total(before, "ts_inference_latency_microseconds{")
    # Requests2XX counts every 2xx answer of the server, the scrape of /metrics itself included
    assert total(after, "Requests2XX{") - total(before, "Requests2XX{") >= 2
    assert total(after, "PredictedLabels{") - total(before, "PredictedLabels{") == 2
    assert any(name.startswith("PredictedLabels{") and 'Label="' in name for name in after)
    assert total(after, "Requests4XX{") > 0  # the refusals of the earlier tests


def test_grpc_client_gets_the_rest_answer(torchserve: TorchServe, images: list[Path]) -> None:
    if not (ROOT / "handlers" / "grpc_gen" / "inference_pb2_grpc.py").is_file():
        run_module("handlers.grpc_stubs")  # what make grpc-stubs (a prerequisite of make test) does
    result = run_module("handlers.grpc_client", *torchserve.cli_args(), *map(str, images), timeout=120)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line.pop("file") for line in lines] == [str(path) for path in images]
    for path, answer in zip(images, lines, strict=True):
        rest = _predict(torchserve, path.read_bytes()).json()
        assert answer["label"] == rest["label"]
        _assert_same_answer(answer, np.array(list(rest["probabilities"].values())), list(rest["probabilities"]))


def _non_loopback_address() -> str | None:
    """This machine's address on its first non-loopback interface, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent for a UDP connect
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_every_api_listens_on_loopback_only(torchserve: TorchServe) -> None:
    """Management and metrics (and inference, gRPC) are not reachable on the machine's other address."""
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to try")
    ports = [int(url.rsplit(":", 1)[1]) for url in (torchserve.inference, torchserve.management, torchserve.metrics)]
    ports.append(int(torchserve.grpc.rsplit(":", 1)[1]))
    for port in ports:
        with pytest.raises(OSError), socket.create_connection((address, port), timeout=3):
            pass
        with socket.create_connection(("127.0.0.1", port), timeout=3):
            pass


def test_hostile_corpus_through_rest_and_grpc(torchserve: TorchServe, images: list[Path]) -> None:
    """Every odd file gets an answer or its own 4xx refusal, over REST and gRPC; the server stays well."""
    if not (ROOT / "handlers" / "grpc_gen" / "inference_pb2_grpc.py").is_file():
        run_module("handlers.grpc_stubs")
    from handlers.grpc_client import GrpcDetectorClient

    good = images[0].read_bytes()
    before = _predict(torchserve, good).json()
    with GrpcDetectorClient(torchserve.grpc, torchserve.token("inference"), timeout=60) as client:
        for item in hostile_corpus():
            rest = _predict(torchserve, item.data)
            over_grpc = client.predict(item.data)
            for answer in (rest.json(), over_grpc):
                if item.expect == "answer":
                    assert answer.get("label") in VERDICTS, (item.name, answer)
                else:
                    error = answer.get("error", {})
                    assert (error.get("code"), error.get("status")) == (item.reason, item.status), (item.name, answer)
            assert rest.status_code == item.status, (item.name, rest.text) + (torchserve.log_tail(),)
    assert _predict(torchserve, good).json()["probabilities"] == before["probabilities"]
    assert httpx.get(f"{torchserve.inference}/ping", headers=torchserve.headers(), timeout=5).status_code == 200


def test_bodies_over_the_request_size_limit_are_refused(torchserve: TorchServe) -> None:
    """config.properties' max_request_size (20 MiB): TorchServe refuses larger bodies before any worker sees them."""
    response = httpx.post(
        f"{torchserve.inference}/predictions/detector",
        content=b"\xff" * (21 * 1024 * 1024),
        headers=torchserve.headers(),
        timeout=60,
    )
    assert response.status_code == 413, response.text[:300]
    assert httpx.get(f"{torchserve.inference}/ping", headers=torchserve.headers(), timeout=5).status_code == 200


def test_answers_carry_provenance_evidence(torchserve: TorchServe, images: list[Path]) -> None:
    """The archive's model config turns evidence on: generator settings in a PNG decide the verdict."""
    stamped = _predict(torchserve, a1111_png()).json()
    assert (stamped["verdict"], stamped["verdict_source"]) == ("ai", "evidence"), stamped
    assert any(item["kind"] == "generator_parameters" and item["strong"] for item in stamped["evidence"])
    plain = _predict(torchserve, images[0].read_bytes()).json()
    assert (plain["verdict"], plain["verdict_source"], plain["evidence"]) == (plain["label"], "model", [])


def test_evidence_from_the_models_decode_is_the_files_own(
    torchserve: TorchServe, exported_model: Path, tmp_path: Path
) -> None:
    """The handler hands the model's decode to the watermark check where the scales match (a PNG's every pixel,
    a 4:2:0 JPEG's half scale): through a real TorchServe the answers are those of the file alone."""
    detector = OnnxDetector(exported_model)
    for data in _evidence_files(detector.preprocess_config.input_size).values():
        answer = _predict(torchserve, data).json()
        decision = detector.classify(detector.preprocess(data)[None])[0]
        assert answer["p_ai"] == pytest.approx(decision.p_ai, abs=TOLERANCE), torchserve.log_tail()
        expected = combine(inspect(data), decision).to_dict()
        assert {key: answer[key] for key in expected} == expected
    marked = _predict(torchserve, txt2img_png()).json()
    assert [item["kind"] for item in marked["evidence"] if item["strong"]] == ["sd_watermark"]


def test_web_app_with_the_torchserve_backend(
    torchserve: TorchServe, images: list[Path], exported_model: Path, tmp_path: Path
) -> None:
    settings = {
        "DETECTOR_SERVE_BACKEND": "torchserve",
        "DETECTOR_SERVE_TORCHSERVE_URL": torchserve.inference,
        "DETECTOR_SERVE_TORCHSERVE_TOKEN": torchserve.token("inference"),
    }
    with running_web_server(exported_model, tmp_path / "web.log", **settings) as url:
        files = [("files", (path.name, path.read_bytes())) for path in images]
        files.append(("files", ("notes.txt", b"not an image")))
        files.append(("files", ("render.png", a1111_png())))
        response = httpx.post(f"{url}/predict", files=files, timeout=60)
        explained = httpx.post(f"{url}/predict?explain=true", files=files[:1], timeout=60)
    assert response.status_code == 200, response.text + (tmp_path / "web.log").read_text()[-3000:]
    # a heatmap asked of the web app comes from the handler, through TorchServe's explanations API
    assert explained.status_code == 200, explained.text
    assert explained.json()["results"][0]["heatmap"].startswith("data:image/png;base64,")
    results = response.json()["results"]
    for path, result in zip(images, results[:2], strict=True):
        rest = _predict(torchserve, path.read_bytes()).json()
        assert result["label"] == rest["label"]
        assert result["model_version"] == rest["model_version"]
        for name, probability in rest["probabilities"].items():
            assert result["probabilities"][name] == pytest.approx(probability, abs=TOLERANCE)
    assert results[2]["error"] == {
        "code": "not_an_image",
        "message": "the file is not an image in a supported format",
        "status": 415,
    }
    # the evidence TorchServe's handler weighed comes through the web app
    assert (results[3]["verdict"], results[3]["verdict_source"]) == ("ai", "evidence")
    assert results[3]["evidence"] == _predict(torchserve, a1111_png()).json()["evidence"]


def test_web_app_says_why_torchserve_cannot_answer(
    torchserve: TorchServe, exported_model: Path, tmp_path: Path
) -> None:
    """A refused token or an unknown model: 502 with one sentence and an unready /readyz, never a 500."""
    photo = ("files", ("photo.jpg", _jpeg_and_png(tmp_path / "images")[0].read_bytes(), "image/jpeg"))
    cases = {
        "token": ({"DETECTOR_SERVE_TORCHSERVE_TOKEN": "not-the-token"}, "refused the web app's inference token"),
        "model": (
            {
                "DETECTOR_SERVE_TORCHSERVE_TOKEN": torchserve.token("inference"),
                "DETECTOR_SERVE_TORCHSERVE_MODEL": "nosuch",
            },
            "no model named 'nosuch'",
        ),
    }
    for name, (settings, phrase) in cases.items():
        env = {
            "DETECTOR_SERVE_BACKEND": "torchserve",
            "DETECTOR_SERVE_TORCHSERVE_URL": torchserve.inference,
            **settings,
        }
        log = tmp_path / f"{name}.log"
        with live_web_server(exported_model, log, **env) as url:
            response = httpx.post(f"{url}/predict", files=[photo], timeout=60)
            ready = httpx.get(f"{url}/readyz", timeout=30)
        assert response.status_code == 502, (name, response.text, log.read_text()[-2000:])
        assert response.json()["error"]["code"] == "backend_refused" and phrase in response.json()["error"]["message"]
        assert ready.status_code == 503 and ready.json()["error"]["code"] == "backend_refused", (name, ready.text)
        assert "Traceback" not in log.read_text(), name


def test_a_file_over_torchserve_request_limit_gets_one_sentence(
    torchserve: TorchServe, exported_model: Path, tmp_path: Path
) -> None:
    """TorchServe answers 413 with an empty body over REST and cuts a gRPC call off; clients say why."""
    if not (ROOT / "handlers" / "grpc_gen" / "inference_pb2_grpc.py").is_file():
        run_module("handlers.grpc_stubs")
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff\xd8" + b"\x00" * (21 * 1024 * 1024))
    client = [sys.executable, "-m", "handlers.grpc_client", *torchserve.cli_args()]
    for extra, codes in (
        ([], {"too_large"}),
        (["--max-request-size", "100000000"], {"cancelled", "resource_exhausted"}),
    ):
        result = subprocess.run([*client, *extra, str(big)], capture_output=True, text=True, timeout=180)
        assert result.returncode == 1, result.stderr
        error = json.loads(result.stdout)["error"]
        assert error["code"] in codes and error["status"] == 413, error
        assert "max_request_size" in error["message"]
        # one sentence on stderr, not a gRPC status dump or a stack trace
        assert result.stderr.strip() == f"error: {big}: {error['message']}", result.stderr
    settings = {
        "DETECTOR_SERVE_BACKEND": "torchserve",
        "DETECTOR_SERVE_TORCHSERVE_URL": torchserve.inference,
        "DETECTOR_SERVE_TORCHSERVE_TOKEN": torchserve.token("inference"),
        "DETECTOR_SERVE_MAX_FILE_BYTES": str(30 * 1024 * 1024),  # the web app takes it; TorchServe does not
    }
    with running_web_server(exported_model, tmp_path / "web.log", **settings) as url:
        response = httpx.post(f"{url}/predict", files=[("files", ("big.jpg", big.read_bytes()))], timeout=120)
    assert response.status_code == 413, response.text
    error = response.json()["results"][0]["error"]
    assert error["code"] == "too_large" and "max_request_size" in error["message"]


# --- one verdict everywhere: web API, scanner, TorchServe -----------------------------------------


def _surface_files(folder: Path, images: list[Path]) -> list[Path]:
    """Six files of four formats: the session's JPEG and PNG, matplotlib's sample photo (Grace Hopper) and
    drawing, a WebP and a 1600 x 1200 JPEG (decoded in draft mode)."""
    folder.mkdir(parents=True, exist_ok=True)
    samples = Path(matplotlib.get_data_path()) / "sample_data"
    for source in (*images, samples / "grace_hopper.jpg", samples / "Minduka_Present_Blue_Pack.png"):
        shutil.copyfile(source, folder / source.name)
    make_image("ai", 503, (200, 150)).save(folder / "render.webp", format="WEBP", quality=85)
    make_image("real", 504, (1600, 1200)).save(folder / "large.jpg", quality=88)
    return sorted(folder.iterdir())


def _expected(model: Path, files: list[Path], consistency: bool = False) -> dict[str, Decision]:
    """Each file's decision by the core in this process (checked against its variants when asked)."""
    detector = OnnxDetector(model)
    decisions = {}
    for path in files:
        data = path.read_bytes()
        decision = detector.classify(detector.preprocess(data)[None])[0]
        decisions[path.name] = check_consistency(detector, data, decision) if consistency else decision
    return decisions


def _web_answers(model: Path, files: list[Path], **options: str) -> dict[str, dict]:
    """The web app's JSON API (in-process, ONNX backend): ``POST /predict`` with every file at once."""
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.config import ServeSettings

    with TestClient(create_app(ServeSettings(model=model))) as client:
        uploads = [("files", (path.name, path.read_bytes())) for path in files]
        response = client.post("/predict", params=options, files=uploads)
    assert response.status_code == 200, response.text
    return {result["filename"]: result for result in response.json()["results"]}


def _scanned(model: Path, folder: Path, output: Path, *flags: str) -> dict[str, dict]:
    """``python -m scan`` (detector-scan) over the folder, its JSON Lines report by file name."""
    run_module("scan", str(folder), "--model", str(model), "--output", str(output), "--format", "jsonl", *flags)
    rows = [json.loads(line) for line in output.with_name(output.name + ".jsonl").read_text().splitlines()]
    return {Path(row["path"]).name: row for row in rows}


def _served(server: TorchServe, files: list[Path], model: str = "detector") -> dict[str, dict]:
    answers = {}
    for path in files:
        response = _predict(server, path.read_bytes(), f"/predictions/{model}")
        assert response.status_code == 200, response.text + server.log_tail()
        answers[path.name] = response.json()
    return answers


def _assert_surfaces_agree(expected: dict[str, Decision], **surfaces: dict[str, dict]) -> None:
    """Same verdict, same P(ai) to 1e-5, same words and same reason for every file on every surface."""
    for name, decision in expected.items():
        for surface, answers in surfaces.items():
            answer = answers[name]
            where = f"{surface}, {name}: {answer.get('summary')} ({answer.get('reason')}) vs {decision}"
            assert answer["label"] == decision.label, where
            assert answer["p_ai"] == pytest.approx(decision.p_ai, abs=TOLERANCE), where
            assert answer["summary"] == decision.summary, where
            assert answer.get("reason") == decision.reason, where
            assert "confidence" not in answer, where


def test_every_surface_gives_the_same_verdict_for_the_same_file(
    torchserve: TorchServe, images: list[Path], exported_model: Path, tmp_path: Path
) -> None:
    files = _surface_files(tmp_path / "files", images)
    _assert_surfaces_agree(
        _expected(exported_model, files),
        web=_web_answers(exported_model, files),
        scanner=_scanned(exported_model, tmp_path / "files", tmp_path / "scan"),
        torchserve=_served(torchserve, files),
    )


def _banded_model(model: Path, files: list[Path], output: Path) -> Path:
    """A copy of ``model`` with thresholds that split ``files`` 2 real / 2 unsure / 2 ai.

    The tiny model is calibrated without an unsure band; this one has it, so the three verdicts are
    seen on every surface. The thresholds sit halfway between neighbouring P(ai).
    """
    from export.onnx import attach_metadata

    detector = OnnxDetector(model)
    ai = detector.metadata.classes.index(AI)
    p_ai = sorted(float(detector.probabilities(detector.preprocess(path.read_bytes())[None])[0, ai]) for path in files)
    assert p_ai[2] - p_ai[1] > 1e-4 and p_ai[4] - p_ai[3] > 1e-4, f"no room for a band between {p_ai}"
    shutil.copyfile(model, output)
    band = replace(detector.metadata, real_threshold=(p_ai[1] + p_ai[2]) / 2, threshold=(p_ai[3] + p_ai[4]) / 2)
    attach_metadata(output, band)
    return output


def test_unsure_band_and_consistency_check_agree_everywhere(
    torchserve: TorchServe, images: list[Path], model_store: Path, exported_model: Path, tmp_path: Path
) -> None:
    """A model with an unsure band, its verdicts checked against re-saved variants on every surface.

    TorchServe serves it as a second model, ``banded``, whose archive turns the consistency check on in
    the model config's ``handler:`` section; the web app is asked with ``consistency=true``, the
    scanner with ``--consistency``.
    """
    files = _surface_files(tmp_path / "files", images)
    banded = _banded_model(exported_model, files, tmp_path / "banded.onnx")
    plain = _expected(banded, files)
    assert sorted(d.label for d in plain.values()) == ["ai", "ai", "real", "real", "unsure", "unsure"]
    _assert_surfaces_agree(
        plain, web=_web_answers(banded, files), scanner=_scanned(banded, files[0].parent, tmp_path / "a")
    )

    config = yaml.safe_load((ROOT / "torchserve" / "model-config.yaml").read_text())
    config.update(minWorkers=1, maxWorkers=1)
    config["handler"]["consistency"] = True
    (tmp_path / "model-config.yaml").write_text(yaml.safe_dump(config))
    archive = ["--model", str(banded), "--model-name", "banded", "--config-file", str(tmp_path / "model-config.yaml")]
    run_module("handlers.archive", *archive, "--output", str(model_store / "banded.mar"))
    manage = ["handlers.manage", *torchserve.cli_args()]
    run_module(*manage, "register", "banded.mar", timeout=180)
    try:
        served = _served(torchserve, files, "banded")
    finally:
        run_module(*manage, "unregister", "banded", "1.0", timeout=120)
    checked = _expected(banded, files, consistency=True)
    _assert_surfaces_agree(
        checked,
        web=_web_answers(banded, files, consistency="true"),
        scanner=_scanned(banded, files[0].parent, tmp_path / "b", "--consistency"),
        torchserve=served,
    )


def test_explanations_api_adds_the_heatmap(torchserve: TorchServe, images: list[Path], exported_model: Path) -> None:
    """``POST /explanations/detector``: the prediction's answer plus the class activation map as a PNG."""
    detector = OnnxDetector(exported_model)
    for path in images:
        data = path.read_bytes()
        response = httpx.post(
            f"{torchserve.inference}/explanations/detector", content=data, headers=torchserve.headers(), timeout=60
        )
        assert response.status_code == 200, response.text + torchserve.log_tail()
        explained, predicted = response.json(), _predict(torchserve, data).json()
        assert "heatmap" not in predicted
        assert explained["label"] == predicted["label"]
        assert explained["p_ai"] == pytest.approx(predicted["p_ai"], abs=TOLERANCE)
        assert explained["summary"] == predicted["summary"]
        header, _, payload = explained["heatmap"].partition(",")
        assert header == "data:image/png;base64"
        drawn = Image.open(io.BytesIO(base64.b64decode(payload)))
        assert (drawn.mode, drawn.size) == ("RGBA", (HEATMAP_SIDE, HEATMAP_SIDE))
        _, cam = detector.explain(detector.preprocess(data)[None])
        expected = _heatmap_pixels(heatmap_data_uri(cam[0]))
        assert np.abs(np.asarray(drawn, dtype=int) - expected).max() <= 2  # the same map, to rounding
    refused = httpx.post(
        f"{torchserve.inference}/explanations/detector", content=b"not an image", headers=torchserve.headers()
    )
    assert refused.status_code == 415 and refused.json()["error"]["code"] == "not_an_image"


def _heatmap_pixels(uri: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.partition(",")[2]))), dtype=int)


class _Context(SimpleNamespace):
    """The part of TorchServe's Context the handler uses, for a batch whose ``explained`` positions asked."""

    def __init__(self, model: Path, explained: set[int], **handler: Any) -> None:
        super().__init__(
            manifest={"model": {"serializedFile": model.name, "modelVersion": "1.0"}},
            system_properties={"model_dir": str(model.parent)},
            model_yaml_config={"handler": handler},
            model_name="detector",
            metrics=SimpleNamespace(add_counter=lambda *args: None, add_time=lambda *args: None),
            statuses={},
            explained=explained,
        )

    def get_request_header(self, index: int, key: str) -> str | None:
        return "True" if key == "explain" and index in self.explained else None

    def set_response_status(self, code: int, phrase: str, index: int) -> None:
        self.statuses[index] = code


def test_handler_draws_heatmaps_only_for_the_explanations_of_a_mixed_batch(
    images: list[Path], exported_model: Path
) -> None:
    """One handler batch: an explanation, a refused file and a prediction (TorchServe may batch them together)."""
    from handlers.torchserve_handler import DetectorHandler

    data = images[0].read_bytes()
    context = _Context(exported_model, explained={0})
    handler = DetectorHandler()
    handler.initialize(context)
    explained, refused, predicted = handler.handle([{"body": data}, {"body": b"nope"}, {"body": data}], context)
    detector = OnnxDetector(exported_model)
    expected = detector.classify(detector.preprocess(data)[None])[0]
    for answer in (explained, predicted):
        assert (answer["label"], answer["summary"]) == (expected.label, expected.summary)
        assert answer["p_ai"] == pytest.approx(expected.p_ai, abs=TOLERANCE)
    assert explained["heatmap"].startswith("data:image/png;base64,") and "heatmap" not in predicted
    assert refused["error"]["code"] == "not_an_image" and context.statuses == {1: 415}


def test_register_a_second_version_and_make_it_the_default(
    torchserve: TorchServe, images: list[Path], trained_run: Path
) -> None:
    manage = ["handlers.manage", *torchserve.cli_args()]
    refused = subprocess.run(
        [sys.executable, "-m", *manage, "register", "http://127.0.0.1:9/elsewhere.mar"], capture_output=True, text=True
    )
    assert refused.returncode == 1 and "does not match any allowed URL" in refused.stderr
    run_module(*manage, "register", "detector-v2.mar", timeout=180)
    try:
        run_module(*manage, "set-default", "detector", "2.0")
        versions = json.loads(run_module(*manage, "describe", "detector").stdout)
        assert {v["modelVersion"] for v in versions} == {"1.0", "2.0"}
        detector = TorchDetector(trained_run / "model.pt")
        path = images[1]
        expected = detector.probabilities(detector.preprocess(path.read_bytes())[None])[0]
        for route in ("/predictions/detector", "/predictions/detector/2.0"):
            answer = _predict(torchserve, path.read_bytes(), route).json()
            assert (answer["archive_version"], answer["runtime"]) == ("2.0", "torch"), answer
            _assert_same_answer(answer, expected, detector.metadata.classes, torchserve.log_tail())
        old = _predict(torchserve, path.read_bytes(), "/predictions/detector/1.0").json()
        assert (old["archive_version"], old["runtime"]) == ("1.0", "onnxruntime")
        scaled = json.loads(run_module(*manage, "scale", "detector", "--min-workers", "2", "--version", "2.0").stdout)
        assert "scaled to 2" in scaled["status"]
    finally:
        run_module(*manage, "set-default", "detector", "1.0")
        run_module(*manage, "unregister", "detector", "2.0", timeout=120)


def test_refresh_the_inference_token(torchserve: TorchServe, images: list[Path]) -> None:
    """Runs after the others: the old inference key stops working."""
    old = torchserve.token("inference")
    run_module("handlers.manage", *torchserve.cli_args(), "refresh-token", "inference")
    assert torchserve.token("inference") != old  # TorchServe rewrote its key file
    data = images[0].read_bytes()
    stale = httpx.post(
        f"{torchserve.inference}/predictions/detector", content=data, headers={"Authorization": f"Bearer {old}"}
    )
    assert stale.status_code == 400
    assert _predict(torchserve, data).status_code == 200


def test_serve_torchserve_without_java_says_so() -> None:
    env = {"PATH": "/nonexistent", "HOME": os.environ.get("HOME", "/root")}
    result = subprocess.run(
        [shutil.which("make") or "make", "-s", "java-check"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "TorchServe needs Java 17" in result.stderr


def _evidence_files(side: int) -> dict[str, bytes]:
    """Files whose evidence reads pixels, for a model of ``side`` px: decoded by the model at the scale the
    watermark check reads (PNG: every pixel; 4:2:0 JPEG with its shorter side 2x ``side`` or more, up to 2048 x 2048:
    half scale), or not (a 4:2:0 JPEG over the watermark's pixel cap, which the model decodes at an eighth)."""
    marked = Image.open(io.BytesIO(txt2img_png((4 * side, 3 * side)))).convert("RGB")
    return {
        "marked.png": txt2img_png(),
        "settings.png": a1111_png(),
        "photo.jpg": encode(make_image("real", 3, (4 * side, 3 * side)), "JPEG", quality=90),
        "marked_q100.jpg": encode(marked, "JPEG", quality=100, subsampling=2),
        "big.jpg": encode(make_image("real", 4, (2400, 1800)), "JPEG", quality=90),
    }


def test_handler_evidence_reads_the_models_decode(exported_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One handler batch with evidence on decodes a file once where the model's decode is at the scale the watermark
    check reads; its answers are those with the evidence read from each file alone. With evidence off, no decode
    is kept."""
    from PIL import ImageFile

    from handlers.torchserve_handler import DetectorHandler

    decodes: list[int] = []
    load = ImageFile.ImageFile.load

    def counting(self):  # noqa: ANN001, ANN202 - Pillow's decode, counted where pixels are still to decode
        if self.tile:
            decodes.append(1)
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting)
    detector = OnnxDetector(exported_model)
    files = _evidence_files(detector.preprocess_config.input_size)
    rows = [{"body": data} for data in files.values()]
    answers = {}
    for evidence in (False, True):
        context = _Context(exported_model, explained=set(), evidence=evidence)
        handler = DetectorHandler()
        handler.initialize(context)
        decodes.clear()
        prepared = handler.preprocess(rows)
        # kept for the evidence only where it reads them: not the eighth-scale decode of big.jpg
        assert sorted(prepared.decoded) == ([0, 1, 2, 3] if evidence else [])
        answers[evidence] = handler.postprocess((prepared, handler.inference(prepared)))
        assert prepared.decoded == {}  # each let go once its evidence was read
        # evidence on: only marked_q100.jpg's full decode is its own (6 decodes of its own before it read the
        # model's, 2 before the model decoded JPEGs within the cap at half scale at most)
        assert len(decodes) == len(files) + (1 if evidence else 0)
    for (name, data), plain, answer in zip(files.items(), answers[False], answers[True], strict=True):
        decision = detector.classify(detector.preprocess(data)[None])[0]
        assert answer["p_ai"] == plain["p_ai"] == pytest.approx(decision.p_ai, abs=TOLERANCE), name
        expected = combine(inspect(data), decision).to_dict()
        assert {key: answer[key] for key in expected} == expected, name
        assert "evidence" not in plain
    assert "sd_watermark" in [item["kind"] for item in answers[True][3]["evidence"]]
