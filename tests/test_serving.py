"""The web app's JSON API, in-process (FastAPI's test client) and in a real uvicorn process."""

from __future__ import annotations

import base64
import contextlib
import io
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from helpers import make_image, with_thresholds
from PIL import Image

from detector.consistency import check_consistency
from detector.runtimes.onnx_runtime import OnnxDetector
from handlers.local_server import free_port
from serving.app import create_app
from serving.config import ServeSettings


def _encoded(fmt: str, seed: int = 5, size: tuple[int, int] = (320, 240)) -> bytes:
    buffer = io.BytesIO()
    make_image("real" if seed % 2 else "ai", seed, size).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def client(exported_model: Path) -> Iterator[TestClient]:
    settings = ServeSettings(model=exported_model, max_file_bytes=2_000_000, max_files=4, max_pixels=5_000_000)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _expected(model: Path, data: bytes) -> dict[str, float]:
    detector = OnnxDetector(model)
    decision = detector.classify(detector.preprocess(data)[None])[0]
    return {"label": decision.label, **decision.probabilities}


def _png(data_uri: str) -> Image.Image:
    header, encoded = data_uri.split(",", 1)
    assert header == "data:image/png;base64"
    image = Image.open(io.BytesIO(base64.b64decode(encoded)))
    image.load()
    return image


def test_probes_and_docs(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["model_version"] == "efficientnet_lite0-tiny"
    assert "/predict" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200


def test_predict_jpeg_and_png_in_one_request(client: TestClient, exported_model: Path) -> None:
    jpeg, png = _encoded("JPEG", 1), _encoded("PNG", 2)
    response = client.post(
        "/predict", files=[("files", ("a.jpg", jpeg, "image/jpeg")), ("files", ("b.png", png, "image/png"))]
    )
    assert response.status_code == 200
    body = response.json()
    assert body["model_version"] == "efficientnet_lite0-tiny"
    for result, data in zip(body["results"], (jpeg, png), strict=True):
        expected = _expected(exported_model, data)
        assert result["label"] == expected["label"]
        assert result["probabilities"]["ai"] == pytest.approx(expected["ai"], abs=1e-6)
        # the number given with the verdict is P(ai), whatever the verdict: never a contradicting confidence
        assert "confidence" not in result and result["p_ai"] == result["probabilities"]["ai"]
        assert result["summary"] == f"P(AI) {100 * result['p_ai']:.0f} %: {result['label']}"
        assert result["verdict"] == result["label"] and "heatmap" not in result  # heatmaps only when asked
        assert result["time_ms"] > 0 and "error" not in result
    assert [r["filename"] for r in body["results"]] == ["a.jpg", "b.png"]


@pytest.mark.parametrize(
    ("name", "data", "status", "code"),
    [
        ("empty.jpg", b"", 422, "empty"),
        ("notes.jpg", b"just some text, not an image", 415, "not_an_image"),
        ("cut.jpg", _encoded("JPEG")[:600], 422, "truncated"),
        ("huge.png", None, 413, "too_large"),
    ],
)
def test_bad_files_get_clear_errors(client: TestClient, name: str, data: bytes | None, status: int, code: str) -> None:
    if data is None:  # 3000 x 2000 = 6 MP, over this app's 5 MP limit, in a small file
        buffer = io.BytesIO()
        Image.new("L", (3000, 2000)).save(buffer, format="PNG")
        data = buffer.getvalue()
    response = client.post("/predict", files=[("files", (name, data, "image/jpeg"))])
    assert response.status_code == status
    error = response.json()["results"][0]["error"]
    assert error["code"] == code and error["status"] == status and "Traceback" not in response.text


def test_one_bad_file_does_not_spoil_the_others(client: TestClient) -> None:
    files = [("files", ("bad.jpg", b"nope", "image/jpeg")), ("files", ("good.png", _encoded("PNG"), "image/png"))]
    response = client.post("/predict", files=files)
    assert response.status_code == 200
    bad, good = response.json()["results"]
    assert bad["error"]["code"] == "not_an_image" and good["label"] in ("ai", "real")


def test_request_limits(client: TestClient) -> None:
    too_many = [("files", (f"{i}.png", _encoded("PNG", i, (32, 32)), "image/png")) for i in range(5)]
    response = client.post("/predict", files=too_many)
    assert response.status_code == 400 and response.json()["error"]["code"] == "too_many_files"

    big = [("files", ("big.bin", b"\xff" * 2_000_001, "image/jpeg"))]
    response = client.post("/predict", files=big)
    assert response.status_code == 413 and response.json()["results"][0]["error"]["code"] == "too_large"

    assert client.post("/predict").status_code == 422  # no files at all


def test_real_uvicorn_process(web_server: str, exported_model: Path) -> None:
    jpeg = _encoded("JPEG", 9)
    response = httpx.post(f"{web_server}/predict", files=[("files", ("photo.jpg", jpeg, "image/jpeg"))], timeout=30)
    assert response.status_code == 200
    result = response.json()["results"][0]
    expected = _expected(exported_model, jpeg)
    assert result["label"] == expected["label"]
    np.testing.assert_allclose(result["probabilities"]["ai"], expected["ai"], atol=1e-6)
    assert httpx.get(f"{web_server}/healthz").json() == {"status": "ok"}


def test_web_app_runs_without_torch(exported_model: Path, tmp_path: Path) -> None:
    """The served path needs only requirements-serve.txt (the web image has no torch): import of torch fails here.
    It runs on uvloop, which that file brings."""
    port = free_port()
    script = (
        "import runpy, sys; sys.modules['torch'] = None; "  # any `import torch` now raises ImportError
        f"sys.argv = ['serving', '--model', {str(exported_model)!r}, '--port', '{port}']; "
        "runpy.run_module('serving', run_name='__main__')"
    )
    log = tmp_path / "server.log"
    with log.open("w") as handle:
        process = subprocess.Popen([sys.executable, "-c", script], stdout=handle, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            assert process.poll() is None, log.read_text()[-3000:]
            time.sleep(0.2)
        image = io.BytesIO()
        make_image("real", 5).save(image, format="JPEG")
        response = httpx.post(f"{url}/predict", files=[("files", ("a.jpg", image.getvalue(), "image/jpeg"))])
        assert response.status_code == 200, log.read_text()[-3000:]
        assert response.json()["results"][0]["label"] in ("ai", "real")
        # requirements-serve.txt's uvloop is the event loop uvicorn picks (docs/performance.md)
        assert "with the onnx backend on uvloop" in log.read_text()
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_an_engine_not_installed_is_named_before_startup(exported_model: Path) -> None:
    """``--engine openvino`` where OpenVINO cannot be imported: a usage error naming the fix, no traceback, no
    server; the default engine falls back to ONNX Runtime there (detector.runtimes.onnx_engine)."""
    script = (
        "import runpy, sys; sys.modules['openvino'] = None; "  # OpenVINO cannot be found or imported now
        "from detector.runtimes import onnx_engine; print('auto ->', onnx_engine('auto')); "
        f"sys.argv = ['serving', '--model', {str(exported_model)!r}, '--engine', 'openvino']; "
        "runpy.run_module('serving', run_name='__main__')"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "auto -> onnxruntime" in result.stdout
    assert result.stderr.startswith("error: the openvino engine needs OpenVINO: pip install openvino")


def test_dependencies_can_be_swapped(client: TestClient, exported_model: Path) -> None:
    """The routes take settings and backend as typed dependencies, so an embedder can override them."""
    from serving.app import get_settings

    app = client.app
    strict = ServeSettings(model=exported_model, max_files=1)
    app.dependency_overrides[get_settings] = lambda: strict
    try:
        two = [("files", (f"{i}.png", _encoded("PNG", i), "image/png")) for i in range(2)]
        response = client.post("/predict", files=two)
        assert response.status_code == 400 and response.json()["error"]["code"] == "too_many_files"
        assert "at most 1" in response.json()["error"]["message"]
    finally:
        app.dependency_overrides.clear()
    assert client.post("/predict", files=two).status_code == 200


def test_explain_adds_a_heatmap_png_of_the_image_shape(client: TestClient, exported_model: Path) -> None:
    wide, bad = _encoded("JPEG", 3, (400, 200)), b"not an image"
    files = [("files", ("wide.jpg", wide, "image/jpeg")), ("files", ("bad.jpg", bad, "image/jpeg"))]
    plain = client.post("/predict", files=files).json()["results"][0]
    response = client.post("/predict", params={"explain": "true"}, files=files)
    assert response.status_code == 200
    explained, refused = response.json()["results"]
    # the same forward pass gives the decision and the map: the answer is the one without explain
    assert (explained["label"], explained["p_ai"]) == (plain["label"], plain["p_ai"])
    heatmap = _png(explained["heatmap"])
    assert heatmap.mode == "RGBA" and heatmap.size == (32, 16)  # the image's 2:1 shape, to stretch over it
    # the overlay is the model's class activation map: red where it points to ai, cyan to real
    detector = OnnxDetector(exported_model)
    cam = detector.explain(detector.preprocess(wide)[None])[1][0]
    pixels = np.asarray(heatmap)
    strongest = np.unravel_index(np.abs(cam).argmax(), cam.shape)
    y, x = (int((i + 0.5) * n / m) for i, n, m in zip(strongest, (16, 32), cam.shape, strict=True))
    assert pixels[y, x, 3] > 0 and (pixels[y, x, 0] > pixels[y, x, 2]) == (cam[strongest] > 0)
    assert "heatmap" not in refused and refused["error"]["code"] == "not_an_image"


def test_options_take_booleans_in_the_api_error_shape(client: TestClient) -> None:
    files = [("files", ("a.png", _encoded("PNG"), "image/png"))]
    for query in ({"explain": "maybe"}, {"consistency": "2"}):
        response = client.post("/predict", params=query, files=files)
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["code"] == "invalid_request" and error["status"] == 422 and next(iter(query)) in error["message"]
    assert client.post("/predict", params={"explain": "false", "consistency": "0"}, files=files).status_code == 200
    parameters = client.get("/openapi.json").json()["paths"]["/predict"]["post"]["parameters"]
    assert {(p["name"], p["in"], p["schema"]["type"]) for p in parameters} == {
        ("explain", "query", "boolean"),
        ("consistency", "query", "boolean"),
    }


def test_consistency_check_is_the_cores(client: TestClient, exported_model: Path) -> None:
    data = _encoded("JPEG", 7)
    response = client.post("/predict", params={"consistency": "true"}, files=[("files", ("a.jpg", data, "image/jpeg"))])
    assert response.status_code == 200
    result = response.json()["results"][0]
    detector = OnnxDetector(exported_model)
    expected = check_consistency(detector, data, detector.classify(detector.preprocess(data)[None])[0])
    assert result["label"] == expected.label and result.get("reason") == expected.reason


def test_unsure_between_the_two_thresholds(exported_model: Path, tmp_path: Path) -> None:
    """A model whose metadata puts this image's P(ai) between real_threshold and threshold calls it unsure."""
    data = _encoded("JPEG", 1)
    p_ai = _expected(exported_model, data)["ai"]
    banded = with_thresholds(exported_model, tmp_path / "banded.onnx", min(1.0, 2 * p_ai), p_ai / 2)
    below = with_thresholds(exported_model, tmp_path / "below.onnx", min(1.0, 2 * p_ai), min(1.0, 1.5 * p_ai))
    verdicts = {}
    for model in (banded, below):
        with TestClient(create_app(ServeSettings(model=model))) as test_client:
            response = test_client.post("/predict", files=[("files", ("a.jpg", data, "image/jpeg"))])
            verdicts[model.stem] = response.json()["results"][0]
    unsure = verdicts["banded"]
    assert unsure["label"] == "unsure" and unsure["p_ai"] == pytest.approx(p_ai, abs=1e-6)
    assert unsure["summary"] == f"P(AI) {100 * p_ai:.0f} %: unsure"
    # no evidence in the file: the verdict is the model's, unsure included
    assert (unsure["verdict"], unsure["verdict_source"]) == ("unsure", "model")
    assert verdicts["below"]["label"] == "real"  # at or below real_threshold


def test_favicon(client: TestClient) -> None:
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/x-icon"
    assert Image.open(io.BytesIO(icon.content)).format == "ICO"
    page = client.get("/").text
    assert 'rel="icon"' in page and client.get("/static/favicon.svg").status_code == 200


def test_a_model_without_the_map_refuses_explain_and_the_page_hides_it(exported_model: Path, tmp_path: Path) -> None:
    """A model exported before heatmaps existed (no ``cam`` output) still answers, and says why it cannot explain."""
    import onnx

    proto = onnx.load(str(exported_model))
    kept = [output for output in proto.graph.output if output.name != "cam"]
    del proto.graph.output[:]
    proto.graph.output.extend(kept)
    older = tmp_path / "older.onnx"
    onnx.save(proto, str(older))
    with TestClient(create_app(ServeSettings(model=older))) as test_client:
        files = [("files", ("a.png", _encoded("PNG"), "image/png"))]
        refused = test_client.post("/predict", params={"explain": "true"}, files=files)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "unsupported_option"
        assert "make export" in refused.json()["error"]["message"]
        assert test_client.post("/predict", params={"consistency": "true"}, files=files).status_code == 200
        page = test_client.get("/").text
        assert 'name="consistency"' in page and 'name="explain"' not in page
