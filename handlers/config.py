"""Settings of the TorchServe tools (archive builder, management CLI, gRPC client), in one typed place.

Each value comes from its default here, then an environment variable ``DETECTOR_TS_<NAME>``, then a
flag. The server's own settings live in ``torchserve/config.properties`` (TorchServe reads that file);
the defaults below point at the addresses it declares.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field

from detector.settings import ToolSettings, tool_config

ROOT = Path(__file__).resolve().parent.parent

#: TorchServe 0.12 writes its tokens here, in the directory it was started from (make serve-torchserve: the repo)
DEFAULT_KEY_FILE = Path("key_file.json")


class _Settings(ToolSettings):
    model_config = tool_config("DETECTOR_TS_", cli_avoid_json=True)


class ArchiveSettings(_Settings):
    """``python -m handlers.archive`` (``make archive``): model + handler + core -> a ``.mar``."""

    model_config = tool_config(prog="python -m handlers.archive")

    model: Path = Field(description="the model file: an exported .onnx (default archive) or a .pt checkpoint")
    output: Path = Field(ROOT / "model_store" / "detector.mar", description="where to write the .mar")
    model_name: str = Field("detector", description="the name TorchServe serves it under (/predictions/NAME)")
    version: str = Field("1.0", description="archive version; register a new one beside it, then set-default")
    config_file: Path = Field(
        ROOT / "torchserve" / "model-config.yaml",
        description="model-config YAML: batchSize, maxBatchDelay, workers, responseTimeout, handler settings",
    )


class ConnectionSettings(_Settings):
    """Where the running TorchServe listens, and where its tokens are."""

    inference_url: str = Field("http://127.0.0.1:8080", description="REST inference API")
    management_url: str = Field("http://127.0.0.1:8081", description="REST management API")
    metrics_url: str = Field("http://127.0.0.1:8082", description="Prometheus metrics API")
    grpc_inference_address: str = Field("127.0.0.1:7070", description="gRPC inference API")
    key_file: Path = Field(DEFAULT_KEY_FILE, description="TorchServe's key_file.json (token authorisation)")
    timeout: float = Field(120.0, gt=0, description="seconds to wait for an answer (registration loads workers)")

    def token(self, kind: Literal["management", "inference", "API"]) -> str:
        """The current token of one kind from the key file TorchServe wrote at start-up."""
        return read_token(self.key_file, kind)


def read_token(key_file: Path, kind: Literal["management", "inference", "API"]) -> str:
    """``{"management": {"key": ...}, "inference": {"key": ...}, "API": {"key": ...}}`` -> one key."""
    try:
        keys = json.loads(Path(key_file).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no TorchServe key file at {key_file}: TorchServe writes key_file.json into the directory it was "
            "started from (make serve-torchserve: the repository root); pass --key-file"
        ) from None
    return str(keys[kind]["key"])
