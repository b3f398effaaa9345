"""Classify images through TorchServe's gRPC inference API: ``python -m handlers.grpc_client photo.jpg ...``.

Sends each file's bytes as the ``data`` input of a ``Predictions`` call, with the inference token
from TorchServe's key file in the ``authorization`` metadata, and prints the handler's JSON answer,
one line per file: the prediction, or ``{"error": {"code", "message", "status"}}`` (the web app's
one error shape), whether the handler refused the file or the call itself failed. A failed call
becomes one sentence (also on stderr), never a bare gRPC status: TorchServe answers a message over
its ``max_request_size`` by cutting the stream (the client sees ``CANCELLED``), so files over that
size are refused here before they are sent. Needs the stubs from ``make grpc-stubs``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import grpc
from pydantic import Field
from pydantic_settings import CliApp, CliPositionalArg

from detector.settings import tool_config
from handlers.config import ConnectionSettings

try:
    from handlers.grpc_gen import inference_pb2, inference_pb2_grpc
except ImportError:  # pragma: no cover - depends on a build step
    raise ImportError("the gRPC stubs are not generated yet: run make grpc-stubs") from None


class GrpcClientSettings(ConnectionSettings):
    """``python -m handlers.grpc_client``: one prediction per image over gRPC."""

    model_config = tool_config(prog="python -m handlers.grpc_client")

    images: CliPositionalArg[list[Path]] = Field(description="image files to classify")
    model_name: str = Field("detector", description="registered model name")
    model_version: str = Field("", description="a registered version (default: the model's default version)")
    max_request_size: int = Field(
        20 * 1024 * 1024,
        ge=1,
        description="TorchServe's max_request_size (torchserve/config.properties): larger files are refused here",
    )


class GrpcDetectorClient:
    """A channel to TorchServe's gRPC inference API that sends the inference token with every call."""

    def __init__(self, address: str, token: str, timeout: float = 30.0) -> None:
        self.channel = grpc.insecure_channel(address)
        self.stub = inference_pb2_grpc.InferenceAPIsServiceStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"),)
        self.timeout = timeout

    def predict(self, image: bytes, model_name: str = "detector", model_version: str = "") -> dict[str, Any]:
        """The handler's answer for one image: a decision, or a refusal ``{"error": {"code", "message", "status"}}``.

        TorchServe's gRPC API carries the handler's per-image HTTP status only inside that JSON: a
        refused image is still a successful call. Transport and token failures raise ``grpc.RpcError``.
        """
        request = inference_pb2.PredictionsRequest(
            model_name=model_name, model_version=model_version, input={"data": image}
        )
        response = self.stub.Predictions(request, metadata=self.metadata, timeout=self.timeout)
        return json.loads(response.prediction)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> GrpcDetectorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _error(code: str, message: str, status: int) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status}}


def call_failure(error: grpc.RpcError, size: int, address: str) -> dict[str, Any]:
    """A failed call as one sentence in the error shape (the gRPC status name stays in the code)."""
    name = error.code().name
    details = (error.details() or "").strip().splitlines()[0][:200] if error.details() else ""
    megabytes = size / 2**20
    if error.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.RESOURCE_EXHAUSTED):
        return _error(
            name.lower(),
            f"TorchServe cut the call off ({name}) without an answer: a {megabytes:.1f} MiB file is most likely over "
            "its max_request_size (torchserve/config.properties)",
            413,
        )
    if error.code() is grpc.StatusCode.UNAVAILABLE:
        return _error("unavailable", f"TorchServe's gRPC API at {address} cannot be reached", 503)
    if error.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
        return _error("deadline_exceeded", "TorchServe gave no answer in time (--timeout)", 504)
    return _error(name.lower(), f"TorchServe refused the call ({name}): {details or 'no detail given'}", 502)


def main(argv: list[str] | None = None) -> int:
    settings = CliApp.run(GrpcClientSettings, cli_args=argv)
    failed = False
    address = settings.grpc_inference_address
    with GrpcDetectorClient(address, settings.token("inference"), settings.timeout) as client:
        for path in settings.images:
            data = path.read_bytes()
            sent = len(data) <= settings.max_request_size
            if not sent:
                answer: dict[str, Any] = _error(
                    "too_large",
                    f"the file is {len(data) / 2**20:.1f} MiB, over TorchServe's max_request_size of "
                    f"{settings.max_request_size / 2**20:.1f} MiB (--max-request-size): not sent",
                    413,
                )
            else:
                try:
                    answer = client.predict(data, settings.model_name, settings.model_version)
                except grpc.RpcError as error:
                    answer = call_failure(error, len(data), address)
                    sent = False
            if "error" in answer:
                # the handler's refusal of a file is an answer; a call that failed or was never made is not
                failed = failed or not sent
                print(f"error: {path}: {answer['error']['message']}", file=sys.stderr)
            print(json.dumps({"file": str(path), **answer}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
