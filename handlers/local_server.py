"""A TorchServe launch on free loopback ports, from the committed config, beside any other server.

``make serve-torchserve`` starts TorchServe on the fixed ports of ``torchserve/config.properties``.
The tests and the benchmarks start their own servers next to it: the same config file, with
``TS_*`` environment overrides (``enable_envvars_config=true``) that move every port, give it a
private scratch folder (pid file, unpacked models, worker sockets) and a distinct worker port range.
Its tokens land in ``key_file.json`` of its working folder.
"""

from __future__ import annotations

import os
import random
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from handlers.config import ROOT

BIN = Path(sys.executable).parent
PORT_NAMES = ("inference", "management", "metrics", "grpc", "grpc_management")


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LocalTorchServe:
    """How to start one TorchServe and where it will listen."""

    model_store: Path
    work_dir: Path
    ports: dict[str, int] = field(default_factory=lambda: {name: free_port() for name in PORT_NAMES})
    #: worker sockets are named after this port: keep clear of a server started by make serve-torchserve
    worker_port: int = field(default_factory=lambda: random.randint(20000, 29000))

    @property
    def inference_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['inference']}"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['management']}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['metrics']}"

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.ports['grpc']}"

    @property
    def key_file(self) -> Path:
        return self.work_dir / "key_file.json"

    def prepare(self) -> None:
        """The working and scratch folders, without a key file left by an earlier server."""
        (self.work_dir / "tmp").mkdir(parents=True, exist_ok=True)
        self.key_file.unlink(missing_ok=True)

    def env(self) -> dict[str, str]:
        """The ``TS_*`` overrides (to add to the environment), and this Python's ``bin`` first on PATH."""
        scratch = str(self.work_dir / "tmp")
        return {
            "TS_INFERENCE_ADDRESS": self.inference_url,
            "TS_MANAGEMENT_ADDRESS": self.management_url,
            "TS_METRICS_ADDRESS": self.metrics_url,
            "TS_GRPC_INFERENCE_PORT": str(self.ports["grpc"]),
            "TS_GRPC_MANAGEMENT_PORT": str(self.ports["grpc_management"]),
            "TS_INITIAL_WORKER_PORT": str(self.worker_port),
            "TS_METRICS_CONFIG": str(ROOT / "torchserve" / "metrics.yaml"),
            "TEMP": scratch,
            "TMPDIR": scratch,
            # the workers run the Python that launched TorchServe: this environment's, with the core importable
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    def command(self) -> list[str]:
        return [
            str(BIN / "torchserve"),
            "--start",
            "--foreground",
            "--ts-config",
            str(ROOT / "torchserve" / "config.properties"),
            "--model-store",
            str(self.model_store),
            "--ncs",
        ]

    def stop_command(self) -> list[str]:
        return [str(BIN / "torchserve"), "--stop"]
