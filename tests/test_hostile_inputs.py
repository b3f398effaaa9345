"""Every entry point against the hostile corpus: a correct answer or a clear 4xx, never a 5xx or a crash."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from corpus import hostile_corpus
from helpers import make_image, run_module, write_dataset
from web_process import running_web_server

from detector.preprocessing import ImageDecodeError, PreprocessConfig, preprocess

CORPUS = hostile_corpus()


def test_corpus_is_big_enough() -> None:
    assert len(CORPUS) >= 30 and len({f.name for f in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("item", CORPUS, ids=[f.name for f in CORPUS])
def test_core_decoder(item) -> None:  # noqa: ANN001
    if item.expect == "answer":
        array = preprocess(item.data, PreprocessConfig())
        assert array.shape == (3, 224, 224) and abs(float(array.mean())) < 3
    else:
        with pytest.raises(ImageDecodeError) as caught:
            preprocess(item.data, PreprocessConfig())
        assert caught.value.reason == item.reason
        assert "Traceback" not in str(caught.value) and len(str(caught.value)) < 200


def test_sixteen_bit_images_keep_their_tones() -> None:
    sixteen = next(f for f in CORPUS if f.name == "sixteen-bit.png")
    array = preprocess(sixteen.data, PreprocessConfig(mean=(0, 0, 0), std=(1, 1, 1)))
    # a 0..65535 ramp becomes a 0..1 ramp, not a white image
    assert 0.4 < float(array.mean()) < 0.6 and float(array.min()) < 0.05 and float(array.max()) > 0.95


def test_web_app_predict_and_page(web_server: str) -> None:
    good = next(f for f in CORPUS if f.name == "orientation-1.jpg")
    before = httpx.post(f"{web_server}/predict", files=[("files", (good.name, good.data, good.content_type))]).json()
    with httpx.Client(base_url=web_server, timeout=60) as client:
        for item in CORPUS:
            files = [("files", (item.name, item.data, item.content_type))]
            response = client.post("/predict", files=files)
            assert response.status_code == item.status, (item.name, response.text[:300])
            result = response.json()["results"][0]
            if item.expect == "answer":
                assert result["label"] in ("ai", "real", "unsure") and 0 <= result["p_ai"] <= 1, item.name
            else:
                assert result["error"]["code"] == item.reason, item.name
            page = client.post("/", files=files)
            assert page.status_code == item.status, item.name
            assert ("Not checked" in page.text) == (item.expect == "refuse"), item.name
        after = client.post("/predict", files=[("files", (good.name, good.data, good.content_type))]).json()
        assert client.get("/readyz").status_code == 200
    assert after["results"][0]["probabilities"] == before["results"][0]["probabilities"]


def test_whole_corpus_in_one_request(web_server: str) -> None:
    files = [("files", (f.name, f.data, f.content_type)) for f in CORPUS[:16]]
    response = httpx.post(f"{web_server}/predict", files=files, timeout=60)
    assert response.status_code == 200
    outcomes = [("error" in r) for r in response.json()["results"]]
    assert outcomes == [f.expect == "refuse" for f in CORPUS[:16]]


def test_scanner_reports_every_file(exported_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    for item in CORPUS:
        (folder / item.name).write_bytes(item.data)
    out = tmp_path / "report"
    run_module(
        "scan",
        *[str(folder / f.name) for f in CORPUS],
        "--model",
        str(exported_model),
        "--output",
        str(out),
        "--format",
        "jsonl",
    )
    rows = {Path(r["path"]).name: r for r in map(json.loads, out.with_suffix(".jsonl").read_text().splitlines())}
    assert set(rows) == {f.name for f in CORPUS}
    for item in CORPUS:
        assert (rows[item.name]["error"] is None) == (item.expect == "answer"), item.name


def test_training_skips_bad_files_and_reports_them(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", per_class=6)
    for item in CORPUS:
        if item.expect == "refuse" and Path(item.name).suffix in (".jpg", ".png"):
            (data / "ai" / f"bad-{item.name}").write_bytes(item.data)
    make_image("ai", 99, (64, 64)).save(data / "ai" / "fine.png")
    run_module(
        "training.train",
        "--data",
        str(data),
        "--epochs",
        "1",
        "--output-dir",
        str(tmp_path / "runs"),
        "--run-name",
        "r",
        "--input-size",
        "64",
        "--batch-size",
        "8",
        "--workers",
        "0",
        "--no-evaluate",
        "--no-pretrained",
    )
    run = tmp_path / "runs" / "r"
    skipped = {Path(e["path"]).name for e in json.loads((run / "skipped.json").read_text())}
    log = (run / "train.log").read_text()
    for item in CORPUS:
        name = f"bad-{item.name}"
        if (data / "ai" / name).exists():
            # refused from its header at discovery, or skipped (and logged) when its pixels fail to decode
            assert name in skipped or name in log, name
    assert "fine.png" not in skipped and (run / "best.pt").is_file()


@pytest.fixture(scope="module")
def strict_server(exported_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The web app with small limits, set the way an operator would: through the environment."""
    log = tmp_path_factory.mktemp("strict") / "server.log"
    with running_web_server(
        exported_model, log, DETECTOR_SERVE_MAX_FILE_BYTES="200000", DETECTOR_SERVE_MAX_FILES="2"
    ) as url:
        yield url


def _good_jpeg() -> bytes:
    return next(f for f in CORPUS if f.name == "orientation-1.jpg").data


def test_limits_are_configurable_and_enforced(strict_server: str) -> None:
    good = ("files", ("good.jpg", _good_jpeg(), "image/jpeg"))
    with httpx.Client(base_url=strict_server, timeout=60) as client:
        assert client.post("/predict", files=[good, good]).status_code == 200
        too_many = client.post("/predict", files=[good, good, good])
        assert too_many.status_code == 400 and too_many.json()["error"]["code"] == "too_many_files"
        big = client.post("/predict", files=[("files", ("big.jpg", b"\xff" * 250_000, "image/jpeg"))])
        assert big.status_code == 413 and big.json()["results"][0]["error"]["code"] == "too_large"


def test_streamed_body_without_length_is_cut_off(strict_server: str) -> None:
    """A chunked upload declares no size; the server stops reading it at the limit instead of spooling it."""
    boundary = "b0undary"

    def body() -> Iterator[bytes]:
        yield f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="x.jpg"\r\n\r\n'.encode()
        for _ in range(200):  # 12.8 MB in all, far over the 400 KB request limit
            yield b"\x00" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    response = httpx.post(f"{strict_server}/predict", content=body(), headers=headers, timeout=60)
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
    again = httpx.post(f"{strict_server}/predict", files=[("files", ("good.jpg", _good_jpeg(), "image/jpeg"))])
    assert again.status_code == 200


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"json": {"files": "x"}}, 422),  # JSON instead of a multipart form
        ({"data": {"other": "x"}}, 422),  # a form without the files field
        ({"content": b"\xff\xd8\xff", "headers": {"content-type": "image/jpeg"}}, 422),  # a raw body
        ({"content": b"--x\r\n", "headers": {"content-type": "multipart/form-data; boundary=x"}}, 422),
    ],
    ids=["json", "no-files-field", "raw-body", "broken-multipart"],
)
def test_malformed_requests_get_a_4xx_without_internals(web_server: str, kwargs: dict, status: int) -> None:
    response = httpx.post(f"{web_server}/predict", timeout=30, **kwargs)
    assert response.status_code in (400, status), response.text[:300]
    assert "Traceback" not in response.text and 'File "' not in response.text


class _RunsCodeWhenUnpickled:
    """What a malicious checkpoint holds: unpickling it would create ``path`` (any call would do)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (self.path,))


def test_checkpoints_with_pickled_code_are_refused(tmp_path: Path) -> None:
    import torch

    from detector.checkpoint import FORMAT, load_model

    marker = tmp_path / "code-ran"
    malicious = tmp_path / "model.pt"
    torch.save({"format": FORMAT, "state_dict": {}, "metadata": _RunsCodeWhenUnpickled(marker)}, malicious)
    with pytest.raises(ValueError, match="refused"):
        load_model(malicious)
    assert not marker.exists()


def test_a_prediction_past_the_request_timeout_answers_504(exported_model: Path) -> None:
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.config import ServeSettings

    settings = ServeSettings(model=exported_model, request_timeout=0.000001)
    with TestClient(create_app(settings)) as client:
        response = client.post("/predict", files=[("files", ("good.jpg", _good_jpeg(), "image/jpeg"))])
        assert response.status_code == 504 and response.json()["error"]["code"] == "timeout"
        assert client.get("/readyz").status_code == 200
