"""Start a server in its own process group, time its cold start, sample its memory, stop it.

Each server is a real process started as a user would start it (``python -m serving``, ``python -m
loadtests.baseline``, ``torchserve --start --foreground``). *Cold start* is the time from launching
the process to its first successful answer to a prediction request; *peak memory* is the largest
sum of resident set sizes of the process and all its descendants (TorchServe: the launcher, Java
and its Python workers), sampled every ``interval`` seconds from launch to stop.

TorchServe is started as the tests start it (:mod:`handlers.local_server`): the committed
config on free ports with a private scratch folder, beside any server of ``make serve-torchserve``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType

import httpx
import psutil

from handlers.local_server import LocalTorchServe, free_port
from loadtests.config import ROOT, Target


@dataclass
class ServerSpec:
    """How to launch one server and how to reach it."""

    name: str
    command: list[str]
    #: the Locust target whose scenario loads it
    target: Target
    #: the base URL (HTTP) or address (gRPC) the load goes to
    host: str
    cwd: Path = ROOT
    env: dict[str, str] = field(default_factory=dict)
    #: TorchServe's key file, once it has written it
    key_file: Path | None = None
    #: extra commands to run to stop it (before the process group is terminated)
    stop_command: list[str] | None = None


def webapp(
    name: str,
    model: Path,
    threads: int | None = None,
    *,
    provenance: bool = False,
    engine: str | None = None,
    precision: str | None = None,
) -> ServerSpec:
    """``python -m serving --model X.onnx``: the web app with the model in process.

    ``provenance=False`` turns off its provenance evidence (``DETECTOR_PROVENANCE_ENABLED``), so it
    does the same work per image as the other servers: decode, resize, forward pass, decision.
    ``engine`` and ``precision`` (``--engine``, ``--precision``): the web app's defaults unless given.
    """
    port = free_port()
    command = [sys.executable, "-m", "serving", "--model", str(model), "--port", str(port)]
    if engine is not None:
        command += ["--engine", engine]
    if precision is not None:
        command += ["--precision", precision]
    if threads is not None:
        command += ["--threads", str(threads)]
    env = {"DETECTOR_PROVENANCE_ENABLED": "true" if provenance else "false"}
    return ServerSpec(name, command, "webapp", f"http://127.0.0.1:{port}", env=env)


def baseline(checkpoint: Path, threads: int | None = None) -> ServerSpec:
    """``python -m loadtests.baseline``: eager PyTorch, one image per forward pass."""
    port = free_port()
    command = [sys.executable, "-m", "loadtests.baseline", "--checkpoint", str(checkpoint), "--port", str(port)]
    if threads is not None:
        command += ["--threads", str(threads)]
    return ServerSpec("baseline", command, "baseline", f"http://127.0.0.1:{port}")


def torchserve(model_store: Path, work_dir: Path) -> ServerSpec:
    """TorchServe with the committed config.properties on free ports, addressed through its REST API."""
    server = LocalTorchServe(model_store, work_dir)
    server.prepare()
    return ServerSpec(
        "torchserve",
        server.command(),
        "torchserve",
        server.inference_url,
        cwd=work_dir,
        env=server.env(),
        key_file=server.key_file,
        stop_command=server.stop_command(),
    )


def torchserve_grpc_view(spec: ServerSpec) -> ServerSpec:
    """The same TorchServe launch, addressed through its gRPC inference API."""
    return replace(spec, name="torchserve-grpc", target="grpc", host=f"127.0.0.1:{spec.env['TS_GRPC_INFERENCE_PORT']}")


class MemorySampler(threading.Thread):
    """Peak RSS of a process tree, sampled in the background until stopped; every sample is kept."""

    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_bytes = 0
        #: (seconds since the sampler started, RSS bytes of the tree)
        self.samples: list[tuple[float, int]] = []
        self._stop_event = threading.Event()

    def _tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def tree_rss(self) -> int:
        total = 0
        for process in self._tree():
            try:
                total += process.memory_info().rss
            except psutil.Error:
                pass  # a worker that ended between the listing and the reading
        return total

    def tree_cpu_seconds(self) -> float:
        """User + system CPU time of the tree so far: robust to other load on the machine, unlike wall time."""
        total = 0.0
        for process in self._tree():
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
        return total

    def run(self) -> None:
        started = time.perf_counter()
        while not self._stop_event.is_set():
            rss = self.tree_rss()
            self.samples.append((time.perf_counter() - started, rss))
            self.peak_bytes = max(self.peak_bytes, rss)
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


class RunningServer:
    """A launched server: ``with RunningServer(spec, log) as server: server.wait_first_answer(...)``."""

    def __init__(self, spec: ServerSpec, log: Path, sample_interval: float = 0.2) -> None:
        self.spec, self.log, self.sample_interval = spec, log, sample_interval
        self.process: subprocess.Popen[bytes] | None = None
        self.sampler: MemorySampler | None = None
        self.started = 0.0

    def __enter__(self) -> RunningServer:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("w") as handle:
            self.started = time.perf_counter()
            self.process = subprocess.Popen(
                self.spec.command,
                cwd=self.spec.cwd,
                env={**os.environ, "PYTHONPATH": str(ROOT), **self.spec.env},
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopping it reaches every descendant
            )
        self.sampler = MemorySampler(self.process.pid, self.sample_interval)
        self.sampler.start()
        return self

    @property
    def peak_megabytes(self) -> float:
        return (self.sampler.peak_bytes if self.sampler else 0) / 2**20

    def cpu_seconds(self) -> float:
        """CPU time the server's processes have used so far (live processes only)."""
        return self.sampler.tree_cpu_seconds() if self.sampler else 0.0

    def token(self) -> str | None:
        if self.spec.key_file is None or not self.spec.key_file.is_file():
            return None
        from handlers.config import read_token

        return read_token(self.spec.key_file, "inference")

    def wait_first_answer(self, image: tuple[str, bytes], timeout: float) -> float:
        """Send ``image`` until an answer with a label comes back; seconds since launch."""
        assert self.process is not None
        deadline = self.started + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.spec.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if self._answers(image):
                    return time.perf_counter() - self.started
            except (httpx.HTTPError, OSError, ValueError):
                pass  # not listening yet, or the model is still loading
            time.sleep(0.1)
        raise RuntimeError(f"{self.spec.name} gave no answer within {timeout:g} s:\n{self.log_tail()}")

    def _answers(self, image: tuple[str, bytes]) -> bool:
        name, data = image
        if self.spec.target in ("webapp", "baseline"):
            response = httpx.post(f"{self.spec.host}/predict", files={"files": (name, data)}, timeout=30)
            return response.status_code == 200 and "label" in response.json()["results"][0]
        token = self.token()
        if token is None:
            return False  # TorchServe has not written its key file yet
        if self.spec.target == "grpc":
            import grpc

            from handlers.grpc_client import GrpcDetectorClient

            try:
                with GrpcDetectorClient(self.spec.host, token, timeout=30) as client:
                    return "label" in client.predict(data)
            except grpc.RpcError:
                return False
        headers = {"Authorization": f"Bearer {token}"}
        response = httpx.post(f"{self.spec.host}/predictions/detector", content=data, headers=headers, timeout=30)
        return response.status_code == 200 and "label" in response.json()

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.is_file() else ""

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.sampler is not None:
            self.sampler.stop()
        if self.process is None:
            return
        if self.spec.stop_command is not None and self.process.poll() is None:
            env = {**os.environ, **self.spec.env}
            subprocess.run(self.spec.stop_command, cwd=self.spec.cwd, env=env, capture_output=True, timeout=60)
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        _kill_group_leftovers(self.process.pid)


def _kill_group_leftovers(group: int) -> None:
    """Workers that outlived their parent in the server's own process group (ours alone, by its id)."""
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass
