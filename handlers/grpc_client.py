"""Classify images through TorchServe's gRPC inference API: ``python -m handlers.grpc_client photo.jpg ...``.

Sends each file's bytes as the ``data`` input of a ``Predictions`` call, with the inference token
from TorchServe's key file in the ``authorization`` metadata, and prints the handler's JSON answer,
one line per file. Needs the stubs from ``make grpc-stubs``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import grpc
from pydantic import Field
from pydantic_settings import CliApp, CliPositionalArg, SettingsConfigDict

from handlers.config import ConnectionSettings

try:
    from handlers.grpc_gen import inference_pb2, inference_pb2_grpc
except ImportError:  # pragma: no cover - depends on a build step
    raise ImportError("the gRPC stubs are not generated yet: run make grpc-stubs") from None


class GrpcClientSettings(ConnectionSettings):
    """``python -m handlers.grpc_client``: one prediction per image over gRPC."""

    model_config = SettingsConfigDict(cli_prog_name="python -m handlers.grpc_client")

    images: CliPositionalArg[list[Path]] = Field(description="image files to classify")
    model_name: str = Field("detector", description="registered model name")
    model_version: str = Field("", description="a registered version (default: the model's default version)")


class GrpcDetectorClient:
    """A channel to TorchServe's gRPC inference API that sends the inference token with every call."""

    def __init__(self, address: str, token: str, timeout: float = 30.0) -> None:
        self.channel = grpc.insecure_channel(address)
        self.stub = inference_pb2_grpc.InferenceAPIsServiceStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"),)
        self.timeout = timeout

    def predict(self, image: bytes, model_name: str = "detector", model_version: str = "") -> dict[str, Any]:
        """The handler's answer for one image: a decision, or a refusal ``{"code", "message", "status"}``.

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


def main(argv: list[str] | None = None) -> int:
    settings = CliApp.run(GrpcClientSettings, cli_args=argv)
    failed = False
    with GrpcDetectorClient(settings.grpc_inference_address, settings.token("inference"), settings.timeout) as client:
        for path in settings.images:
            try:
                answer: dict[str, Any] = client.predict(path.read_bytes(), settings.model_name, settings.model_version)
            except grpc.RpcError as error:
                failed = True
                answer = {"error": {"grpc_status": error.code().name, "message": error.details()}}
            print(json.dumps({"file": str(path), **answer}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
