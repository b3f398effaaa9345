"""The web app probed from outside, in a real uvicorn process: slow clients, bursts, a backend that is down.

Slow or stalled clients are cut off after bounded times (headers, then body); uploads held in memory
at once are bounded (503 + Retry-After beyond); every refusal has one shape; a backend that cannot
answer gives a 503 with a reason and an unready ``/readyz``, never a 500.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import make_image
from web_process import live_web_server, running_web_server

from handlers.local_server import free_port
from loadtests.burst import noise_jpeg


def _jpeg(seed: int = 3, size: tuple[int, int] = (320, 240)) -> bytes:
    buffer = io.BytesIO()
    make_image("real", seed, size).save(buffer, format="JPEG")
    return buffer.getvalue()


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def _closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> tuple[bool, bytes]:
    """Whether the server closes ``sock`` within ``seconds`` (sending ``trickle`` a byte at a time meanwhile)."""
    deadline = time.monotonic() + seconds
    received = b""
    sock.settimeout(0.25)
    position = 0
    while time.monotonic() < deadline:
        if position < len(trickle):
            try:
                sock.sendall(trickle[position : position + 1])
            except OSError:
                return True, received
            position += 1
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return True, received
        if not chunk:
            return True, received
        received += chunk
    return False, received


@pytest.fixture(scope="module")
def impatient_server(exported_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("impatient") / "server.log"
    settings = {"DETECTOR_SERVE_HEADER_TIMEOUT": "1", "DETECTOR_SERVE_BODY_TIMEOUT": "2"}
    with running_web_server(exported_model, log, **settings) as url:
        yield url


def test_silent_and_slow_header_connections_are_closed(impatient_server: str) -> None:
    """uvicorn alone holds both for ever; the header deadline closes them, trickling or not."""
    address = _address(impatient_server)
    with socket.create_connection(address) as silent, socket.create_connection(address) as trickling:
        silent_closed, _ = _closed_within(silent, 6)
        # a header sent one byte every 0.25 s: each byte would reset an idle timer, not a deadline
        trickle_closed, _ = _closed_within(trickling, 6, b"POST /predict HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100)
    assert silent_closed and trickle_closed
    # the server is fine, and keeps a connection that sends its request in time
    with httpx.Client(base_url=impatient_server, timeout=30) as client:
        for _ in range(2):
            response = client.post("/predict", files=[("files", ("a.jpg", _jpeg(), "image/jpeg"))])
            assert response.status_code == 200


@pytest.mark.parametrize("trickle", [False, True], ids=["stalled", "trickling"])
def test_a_body_that_does_not_arrive_in_time_gets_408(impatient_server: str, trickle: bool) -> None:
    boundary = "b0undary"
    head = (
        "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="x.jpg"\r\n\r\n'
    ).encode()
    started = time.monotonic()
    with socket.create_connection(_address(impatient_server)) as sock:
        sock.sendall(head + b"\xff\xd8" + b"\x00" * 1000)  # half a body, then nothing (or a byte at a time)
        closed, received = _closed_within(sock, 8, b"\x00" * 1000 if trickle else b"")
    elapsed = time.monotonic() - started
    assert closed and elapsed < 7, (elapsed, received[:300])
    head_part, _, body = received.partition(b"\r\n\r\n")
    assert head_part.startswith(b"HTTP/1.1 408"), received[:300]
    assert json.loads(body)["error"] == {
        "code": "request_timeout",
        "message": "the request body did not arrive within 2 s",
        "status": 408,
    }
    response = httpx.post(f"{impatient_server}/predict", files=[("files", ("a.jpg", _jpeg(), "image/jpeg"))])
    assert response.status_code == 200


def test_upload_memory_is_bounded_with_503_and_retry_after(exported_model: Path, tmp_path: Path) -> None:
    """A burst beyond the budget is told to come back (503 + Retry-After); the budget is returned after."""
    big = noise_jpeg(19)  # 16 of these: 300 MiB, a request alone is always taken
    small = _jpeg()
    settings = {"DETECTOR_SERVE_MAX_UPLOAD_MEMORY": "100000000", "DETECTOR_SERVE_INFERENCE_CONCURRENCY": "1"}
    with running_web_server(exported_model, tmp_path / "server.log", **settings) as url:
        request = httpx.Request("POST", f"{url}/predict", files=[("files", (f"{i}.jpg", big)) for i in range(16)])
        body_sent = threading.Event()

        def body() -> Iterator[bytes]:
            yield from request.stream  # type: ignore[misc]
            body_sent.set()

        answers: list[httpx.Response] = []
        heavy = threading.Thread(
            target=lambda: answers.append(
                httpx.post(
                    f"{url}/predict",
                    content=body(),
                    headers={"content-type": request.headers["content-type"]},
                    timeout=300,
                )
            )
        )
        heavy.start()
        assert body_sent.wait(120)
        time.sleep(0.3)  # it is parsed and decoding its 16 camera-sized files now: seconds of work
        busy = httpx.post(f"{url}/predict", files=[("files", ("small.jpg", small, "image/jpeg"))], timeout=60)
        heavy.join(300)
        assert busy.status_code == 503, busy.text
        assert busy.headers["retry-after"] == "2"
        assert busy.json()["error"]["code"] == "busy"
        assert answers and answers[0].status_code == 200, answers[0].text[:300] if answers else "no answer"
        assert len(answers[0].json()["results"]) == 16
        after = httpx.post(f"{url}/predict", files=[("files", ("small.jpg", small, "image/jpeg"))], timeout=60)
        assert after.status_code == 200
        # once the large upload was answered and none other held, the memory it left was handed back
        log = tmp_path / "server.log"
        for _ in range(50):
            if "memory handed back after a burst" in log.read_text():
                break
            time.sleep(0.1)
        assert "memory handed back after a burst" in log.read_text(), log.read_text()[-2000:]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("POST", "/predict", {"json": {"files": "x"}}, 422),  # JSON instead of a multipart form
        ("POST", "/predict", {"data": {"other": "x"}}, 422),  # a form without the files field
        ("POST", "/predict", {"files": [("file", ("a.jpg", b"\xff\xd8\xff"))]}, 422),  # the wrong field name
        ("POST", "/predict", {"content": b"\xff\xd8\xff", "headers": {"content-type": "image/jpeg"}}, 422),
        ("POST", "/predict", {"content": b"\x00" * 10, "headers": {"content-type": "application/octet-stream"}}, 422),
        ("POST", "/predict", {"content": b"--x\r\n", "headers": {"content-type": "multipart/form-data"}}, 400),
        (
            "POST",
            "/predict",
            {"content": b"--x\r\n", "headers": {"content-type": "multipart/form-data; boundary=x"}},
            422,
        ),
        ("GET", "/nowhere", {}, 404),
        ("DELETE", "/predict", {}, 405),
        ("POST", "/predict", {"files": [("files", (f"{i}.jpg", b"x")) for i in range(17)]}, 400),
    ],
    ids=[
        "json",
        "no-files-field",
        "wrong-field-name",
        "raw-jpeg",
        "octet-stream",
        "no-boundary",
        "broken-multipart",
        "not-found",
        "wrong-method",
        "too-many-files",
    ],
)
def test_every_refusal_has_one_shape(web_server: str, method: str, path: str, kwargs: dict, status: int) -> None:
    """``{"error": {"code", "message", "status"}}``, whatever refused the request (the app, FastAPI, Starlette)."""
    response = httpx.request(method, f"{web_server}{path}", timeout=30, **kwargs)
    assert response.status_code == status, response.text[:300]
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "status"}, body
    assert body["error"]["status"] == status and body["error"]["code"] and body["error"]["message"]
    assert "Traceback" not in response.text and 'File "' not in response.text


def test_a_body_declared_too_large_is_refused_in_the_same_shape(web_server: str) -> None:
    with socket.create_connection(_address(web_server)) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999\r\n\r\n")
        closed, received = _closed_within(sock, 10)
    head, _, body = received.partition(b"\r\n\r\n")
    assert closed and head.startswith(b"HTTP/1.1 413"), received[:300]
    assert json.loads(body)["error"]["code"] == "request_too_large"


def test_the_page_form_without_files_answers_with_the_page(web_server: str) -> None:
    response = httpx.post(f"{web_server}/", data={"other": "x"}, timeout=30)
    assert response.status_code == 422 and "text/html" in response.headers["content-type"]
    assert "Choose one or more images first" in response.text


def test_torchserve_that_is_down_gives_503_and_not_ready(exported_model: Path, tmp_path: Path) -> None:
    settings = {
        "DETECTOR_SERVE_BACKEND": "torchserve",
        "DETECTOR_SERVE_TORCHSERVE_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
    }
    with live_web_server(exported_model, tmp_path / "web.log", **settings) as url:
        response = httpx.post(f"{url}/predict", files=[("files", ("a.jpg", _jpeg(), "image/jpeg"))], timeout=30)
        ready = httpx.get(f"{url}/readyz", timeout=30)
        # consistency is the handler's model-config switch, not a per-request option: refused as such,
        # before TorchServe is even asked; explain goes to TorchServe's explanations API (down here)
        unsupported = httpx.post(
            f"{url}/predict?consistency=true", files=[("files", ("a.jpg", _jpeg(), "image/jpeg"))], timeout=30
        )
        explained = httpx.post(
            f"{url}/predict?explain=true", files=[("files", ("a.jpg", _jpeg(), "image/jpeg"))], timeout=30
        )
    log = (tmp_path / "web.log").read_text()
    assert response.status_code == 503, response.text + log[-2000:]
    assert response.json()["error"]["code"] == "backend_unavailable"
    assert "cannot be reached" in response.json()["error"]["message"]
    assert response.headers["retry-after"]
    assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
    assert unsupported.status_code == 400 and unsupported.json()["error"]["code"] == "unsupported_option"
    assert "model config (handler.consistency)" in unsupported.json()["error"]["message"]
    assert explained.status_code == 503 and explained.json()["error"]["code"] == "backend_unavailable"
    assert "Traceback" not in log
