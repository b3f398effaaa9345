"""Locust scenarios: one image per request, sent as soon as the previous answer arrives (a closed loop).

* ``WebAppUser`` -- the web app's (and the baseline's) ``POST /predict``, multipart field ``files``.
* ``MixedWebAppUser`` -- the same with odd and hostile files among the photos (``make soak``).
* ``TorchServeRestUser`` -- TorchServe's ``POST /predictions/<model>``, the raw image as the body,
  ``Authorization: Bearer <inference token>``.
* ``TorchServeGrpcUser`` -- TorchServe's gRPC ``Predictions`` through :class:`handlers.grpc_client.GrpcDetectorClient`.

An answer counts as a success only when it carries a label, so a server that answers quickly with
errors cannot look fast. Settings come from ``DETECTOR_LOAD_*`` variables (:mod:`loadtests.config`);
``python -m loadtests.run`` sets them. Run by hand::

    locust -f loadtests/locustfile.py --headless -u 4 -t 30s --host http://127.0.0.1:8000 WebAppUser
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

# Locust imports this file by path, with only its folder on sys.path: make the repository importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc.experimental.gevent as grpc_gevent  # noqa: E402
from locust import User, constant, task  # noqa: E402
from locust.contrib.fasthttp import FastHttpUser  # noqa: E402

from loadtests.config import ScenarioSettings  # noqa: E402
from loadtests.images import ImagePool  # noqa: E402

# gRPC's own threads must yield to gevent's loop, or a gRPC call blocks every Locust user at once.
grpc_gevent.init_gevent()

SETTINGS = ScenarioSettings()
_pool: ImagePool | None = None


def pool() -> ImagePool:
    """Loaded once per Locust process, on first use (the file is also imported just to list users)."""
    global _pool
    if _pool is None:
        _pool = ImagePool.from_folder(SETTINGS.images, SETTINGS.image_count, SETTINGS.seed)
    return _pool


def _label_of(body: Any) -> str | None:
    """The label of a web-app answer (``results[0].label``) or of a TorchServe one (``label``)."""
    if isinstance(body, dict) and isinstance(body.get("results"), list) and body["results"]:
        body = body["results"][0]
    return body.get("label") if isinstance(body, dict) else None


class WebAppUser(FastHttpUser):
    """The web app's API (``python -m serving``), and the baseline that speaks the same API."""

    wait_time = constant(0)

    @task
    def predict(self) -> None:
        name, data = pool().pick()
        files = {"files": (name, data, "image/jpeg")}
        with self.client.post("/predict", files=files, name="POST /predict", catch_response=True) as response:
            _check(response)


class MixedWebAppUser(FastHttpUser):
    """The soak: the web app's ``/predict`` with photos and, in ``odd_share`` of requests, odd or hostile files.

    An odd file may be answered (a 1x1 PNG is still an image) or refused with a 4xx; either is right.
    Only a 5xx, a broken connection or a non-JSON body counts as a failure.
    """

    wait_time = constant(0)

    @task
    def predict(self) -> None:
        odd = _odd_pool()
        if odd is not None and odd.rng.random() < SETTINGS.odd_share:
            name, data = odd.pick()
            label = "POST /predict (odd files)"
        else:
            name, data = pool().pick()
            label = "POST /predict (photos)"
        files = {"files": (name, data, "application/octet-stream")}
        with self.client.post("/predict", files=files, name=label, catch_response=True) as response:
            if response.status_code == 0 or response.status_code >= 500:
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
                return
            try:
                response.json()
            except ValueError:
                response.failure(f"HTTP {response.status_code} without a JSON body: {(response.text or '')[:200]}")
                return
            response.success()


_odd: ImagePool | None = None


def _odd_pool() -> ImagePool | None:
    """Every file of ``odd_files`` (any name, any content), loaded once."""
    global _odd
    if _odd is None and SETTINGS.odd_files is not None:
        _odd = ImagePool.from_any_files(SETTINGS.odd_files, SETTINGS.seed + 1)
    return _odd


class TorchServeRestUser(FastHttpUser):
    """TorchServe's REST inference API; the token is read once per user at start."""

    wait_time = constant(0)

    def on_start(self) -> None:
        token = SETTINGS.inference_token()
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.path = f"/predictions/{SETTINGS.torchserve_model}"

    @task
    def predict(self) -> None:
        _, data = pool().pick()
        with self.client.post(
            self.path, data=data, headers=self.headers, name=f"POST {self.path}", catch_response=True
        ) as response:
            _check(response)


def _check(response: Any) -> None:
    if response.status_code != 200:
        response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
        return
    try:
        label = _label_of(response.json())
    except ValueError:
        label = None
    if label is None:
        response.failure(f"no label in the answer: {(response.text or '')[:200]}")


class TorchServeGrpcUser(User):
    """TorchServe's gRPC inference API; each call is reported to Locust as one request of type ``grpc``."""

    wait_time = constant(0)

    def on_start(self) -> None:
        from handlers.grpc_client import GrpcDetectorClient  # needs the stubs of `make grpc-stubs`

        token = SETTINGS.inference_token() or ""
        self.grpc = GrpcDetectorClient(self.host, token)

    def on_stop(self) -> None:
        self.grpc.close()

    @task
    def predict(self) -> None:
        _, data = pool().pick()
        started = time.perf_counter()
        exception: Exception | None = None
        answer: dict[str, Any] = {}
        try:
            answer = self.grpc.predict(data, SETTINGS.torchserve_model)
            if _label_of(answer) is None:
                exception = RuntimeError(f"no label in the answer: {str(answer)[:200]}")
        except Exception as error:  # grpc.RpcError and anything the client raises: a failed request
            exception = error
        self.environment.events.request.fire(
            request_type="grpc",
            name="Predictions",
            response_time=1000 * (time.perf_counter() - started),
            response_length=len(str(answer)),
            exception=exception,
            context={},
        )
