"""Settings of the load tests and benchmarks, in one typed place: defaults, then ``DETECTOR_LOAD_<NAME>``, then flags.

The Locust scenarios (``loadtests/locustfile.py``) run inside Locust's own process, so they read
:class:`ScenarioSettings` from the environment; ``python -m loadtests.run`` and ``python -m
loadtests.bench`` take the same fields as flags and hand them on through that environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, get_args

from pydantic import Field, SecretStr

from detector.settings import ToolSettings, tool_config

ROOT = Path(__file__).resolve().parent.parent
#: git-ignored home of everything the benchmarks build (models, archives, images, results)
BENCH_DIR = ROOT / "runs" / "bench"
ENV_PREFIX = "DETECTOR_LOAD_"

Target = Literal["webapp", "baseline", "torchserve", "grpc"]

#: where each target listens by default: make serve, the baseline, TorchServe REST and gRPC
DEFAULT_HOSTS: dict[str, str] = {
    "webapp": "http://127.0.0.1:8000",
    "baseline": "http://127.0.0.1:8001",
    "torchserve": "http://127.0.0.1:8080",
    "grpc": "127.0.0.1:7070",
}
#: the Locust user class that drives each target (the baseline speaks the web app's API)
USER_CLASSES: dict[str, str] = {
    "webapp": "WebAppUser",
    "baseline": "WebAppUser",
    "torchserve": "TorchServeRestUser",
    "grpc": "TorchServeGrpcUser",
}


ServerName = Literal[
    "baseline",
    "torchserve",
    "torchserve-grpc",
    "webapp",
    "webapp-int8",
    "webapp-openvino",
    "webapp-openvino-bf16",
    "webapp-provenance",
    "webapp-provenance-openvino",
]
#: every server, in the order make bench measures them
SERVER_NAMES: tuple[ServerName, ...] = get_args(ServerName)


class _Settings(ToolSettings):
    model_config = tool_config(ENV_PREFIX, cli_avoid_json=True)


class ScenarioSettings(_Settings):
    """What every Locust user needs: the images it sends and how to reach TorchServe."""

    images: Path = Field(BENCH_DIR / "images", description="folder of image files; each request sends one of them")
    image_count: int = Field(20, ge=1, description="photos generated into --images when it holds none")
    torchserve_model: str = Field("detector", description="model name registered in TorchServe")
    torchserve_token: SecretStr | None = Field(None, description="TorchServe inference token")
    torchserve_key_file: Path = Field(
        Path("key_file.json"), description="TorchServe's key_file.json, read when no token is given"
    )
    seed: int = Field(0, description="seed of the image choice, so runs send the same sequence")
    odd_files: Path | None = Field(
        None, description="folder of odd and hostile files that MixedWebAppUser sends among the photos (the soak)"
    )
    odd_share: float = Field(0.3, ge=0, le=1, description="share of MixedWebAppUser's requests that send an odd file")

    def inference_token(self) -> str | None:
        """The token given, else the inference key TorchServe wrote at start-up, else none (auth off)."""
        if self.torchserve_token is not None:
            return self.torchserve_token.get_secret_value()
        if self.torchserve_key_file.is_file():
            from handlers.config import read_token

            return read_token(self.torchserve_key_file, "inference")
        return None

    def to_env(self) -> dict[str, str]:
        """These settings as ``DETECTOR_LOAD_*`` variables, for the Locust process."""
        env = {
            "IMAGES": str(self.images),
            "TORCHSERVE_MODEL": self.torchserve_model,
            "TORCHSERVE_KEY_FILE": str(self.torchserve_key_file),
            "SEED": str(self.seed),
            "ODD_SHARE": str(self.odd_share),
        }
        if self.odd_files is not None:
            env["ODD_FILES"] = str(self.odd_files)
        if self.torchserve_token is not None:
            env["TORCHSERVE_TOKEN"] = self.torchserve_token.get_secret_value()
        return {ENV_PREFIX + key: value for key, value in env.items()}


class LoadtestSettings(ScenarioSettings):
    """``python -m loadtests.run`` (``make loadtest``): one headless Locust run against one server."""

    model_config = tool_config(prog="python -m loadtests.run")

    target: Target = Field("webapp", description="which server: webapp, baseline, torchserve (REST) or grpc")
    host: str | None = Field(None, description="its address (default: the target's usual one, see DEFAULT_HOSTS)")
    users: int = Field(4, ge=1, description="concurrent Locust users, each sending its next image on an answer")
    spawn_rate: float | None = Field(None, gt=0, description="users started per second (default: all at once)")
    duration: str = Field("30s", description="run time, Locust syntax: 30s, 2m, 1h30m")
    output: Path | None = Field(None, description="folder for Locust's CSV and the summary (default: runs/loadtests/)")

    @property
    def address(self) -> str:
        return self.host or DEFAULT_HOSTS[self.target]


class BenchSettings(ScenarioSettings):
    """``python -m loadtests.bench`` (``make bench``): every serving path in turn, one table."""

    model_config = tool_config(prog="python -m loadtests.bench")

    servers: list[ServerName] = Field(
        default_factory=lambda: list(SERVER_NAMES),
        description="which to measure, in this order (torchserve-grpc loads the same TorchServe over gRPC; "
        "webapp-int8 only when an int8 model exists or can be built; webapp-openvino(-bf16) only when openvino is "
        "installed; webapp-provenance(-openvino): ONNX Runtime (OpenVINO) fp32 with the provenance evidence on, as "
        "make serve runs it; the other webapp rows turn it off to do the same work as the rest)",
    )
    users: int = Field(8, ge=1, description="concurrent Locust users against every server")
    duration: str = Field("40s", description="Locust run time per server")
    work_dir: Path = Field(BENCH_DIR, description="models, archive, logs and results go here")
    checkpoint: Path | None = Field(None, description="a .pt to measure (default: Lite0 at 224 px, untrained head)")
    int8: Path | None = Field(None, description="an int8 .onnx (default: made with export/quantize.py if present)")
    threads: int | None = Field(None, ge=1, description="intra-op threads of each server (default: all cores)")
    torchserve_config: Path | None = Field(
        None, description="model-config YAML packed into the archive (default: torchserve/model-config.yaml)"
    )
    start_timeout: float = Field(180.0, gt=0, description="seconds a server may take to give its first answer")
    sample_interval: float = Field(0.2, gt=0, description="seconds between memory samples of the server")
    rounds: int = Field(
        1,
        ge=1,
        description="measure the servers this many times, in turn, the order reversed every other round (so that "
        "other load on the machine weighs on all alike); with more than one, a summary gives each server's median "
        "and, for each evidence pair (webapp-provenance / webapp, webapp-provenance-openvino / webapp-openvino), "
        "evidence-on throughput as a share of evidence-off, round by round",
    )


class BaselineSettings(ToolSettings):
    """``python -m loadtests.baseline``: the naive reference server (eager PyTorch, one image per forward pass)."""

    model_config = tool_config("DETECTOR_BASELINE_", "python -m loadtests.baseline")

    checkpoint: Path = Field(description="a .pt checkpoint (runs/NAME/model.pt)")
    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8001, ge=0, le=65535)
    threads: int | None = Field(None, ge=1, description="torch intra-op threads (default: torch's, all cores)")


class EvidenceCostSettings(ToolSettings):
    """``python -m loadtests.evidence_cost``: where the provenance evidence's time goes, by kind of file."""

    model_config = tool_config(ENV_PREFIX + "EVIDENCE_", "python -m loadtests.evidence_cost", cli_avoid_json=True)

    images: list[Path] = Field(
        default_factory=lambda: [BENCH_DIR / "images"],
        description="folders of images (searched recursively) or single files; default: the benchmark's 20 photos",
    )
    sample: int | None = Field(None, ge=1, description="at most this many files from each folder, drawn at random")
    seed: int = Field(0, description="seed of the draw")
    repeats: int = Field(3, ge=1, description="timed runs per file and way; the median is kept")
    input_size: int = Field(224, ge=8, description="the model's input size, which its draft-mode decode aims at")


class HalfScaleSettings(ToolSettings):
    """``python -m loadtests.half_scale``: the model's answers with JPEGs decoded at half scale at most, and without."""

    model_config = tool_config(ENV_PREFIX + "HALF_SCALE_", "python -m loadtests.half_scale", cli_avoid_json=True)

    manifest: Path = Field(description="CSV with path,label columns (paths relative to its folder)")
    model: Path = Field(ROOT / "model_store" / "detector.onnx", description="the exported model (make export)")


class RequestCostSettings(ToolSettings):
    """``python -m loadtests.request_cost``: one request's CPU time in the web app, split by thread group."""

    model_config = tool_config(ENV_PREFIX + "REQUEST_COST_", "python -m loadtests.request_cost", cli_avoid_json=True)

    image: Path = Field(description="the file every request sends")
    requests: int = Field(300, ge=1, description="requests timed, one after another")
    warmup: int = Field(20, ge=0, description="requests sent first, not timed")
    model: Path = Field(ROOT / "model_store" / "detector.onnx", description="the exported model (make export)")
    engine: Literal["auto", "onnxruntime", "openvino"] = Field("auto", description="the web app's --engine")
    threads: int = Field(1, ge=1, description="the web app's --threads (engine threads per forward pass)")
    loop: Literal["auto", "asyncio", "uvloop"] = Field(
        "auto", description="uvicorn's event loop (auto, as python -m serving runs: uvloop where installed)"
    )


class MicrobenchSettings(ToolSettings):
    """``python -m loadtests.microbench`` (``make microbench``): the bare model and the preprocessing, timed."""

    model_config = tool_config(ENV_PREFIX + "MICRO_", "python -m loadtests.microbench", cli_avoid_json=True)

    work_dir: Path = Field(BENCH_DIR, description="models and the results (microbench.md/.json) go here")
    images: Path = Field(BENCH_DIR / "images", description="photos for the model's inputs (generated when empty)")
    checkpoint: Path | None = Field(None, description="a .pt to measure (default: Lite0 at 224 px, untrained head)")
    int8: Path | None = Field(None, description="an int8 .onnx (default: made with export/quantize.py if present)")
    no_int8: bool = Field(False, description="skip the int8 model")
    agreement_run: Path | None = Field(
        None,
        description="a run folder: also compare OpenVINO fp32/bf16 with ONNX Runtime fp32 on its test split "
        "(labels, largest P change; use with --checkpoint RUN/model.pt)",
    )
    batch_sizes: list[int] = Field(default_factory=lambda: [1, 8, 32], description="batch sizes timed")
    threads: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, description="intra-op threads")
    min_seconds: float = Field(1.5, gt=0, description="each timed run lasts at least this long")
    repeats: int = Field(3, ge=1, description="timed runs per measurement; the median is reported")
    decode_repeats: int = Field(10, ge=1, description="decodes per JPEG and mode; the median is reported")


class SoakSettings(ScenarioSettings):
    """``python -m loadtests.soak`` (``make soak``): the web app under a long mix of photos and hostile files."""

    model_config = tool_config(prog="python -m loadtests.soak")

    odd_files: Path = Field(BENCH_DIR / "odd-files", description="folder of odd and hostile files (make soak fills it)")
    model: Path | None = Field(None, description="the .onnx to serve (default: the benchmark's Lite0 at 224 px)")
    users: int = Field(4, ge=1, description="concurrent Locust users")
    duration: str = Field("3m", description="run time, Locust syntax")
    work_dir: Path = Field(BENCH_DIR, description="models, logs and results go here")
    sample_interval: float = Field(1.0, gt=0, description="seconds between memory samples of the server")
    max_growth_mb: float = Field(
        100.0, gt=0, description="largest growth of the server's memory over the second half of the run that passes"
    )


class BurstSettings(_Settings):
    """``python -m loadtests.burst``: a burst of large concurrent uploads; the web app's peak and settled memory."""

    model_config = tool_config(prog="python -m loadtests.burst")

    model: Path | None = Field(None, description="the .onnx to serve (default: the benchmark's Lite0 at 224 px)")
    images: Path = Field(BENCH_DIR / "images", description="photos for the benchmark's default model")
    requests: int = Field(8, ge=1, description="requests sent at the same moment")
    files_per_request: int = Field(16, ge=1, description="files in each request (the web app's default limit: 16)")
    file_mib: float = Field(19.0, gt=0, description="size of each file: a noise JPEG of about this many MiB")
    rounds: int = Field(2, ge=1, description="bursts in a row (a leak or fragmentation grows from one to the next)")
    retries: int = Field(
        30, ge=0, description="times a client sends again after a 503's Retry-After (0: take the 503 as its answer)"
    )
    settle: float = Field(20.0, ge=0, description="seconds of quiet after the last burst before memory is read")
    server_args: list[str] = Field(
        default_factory=list, description="extra flags for python -m serving, e.g. --max-upload-memory 268435456"
    )
    work_dir: Path = Field(BENCH_DIR, description="models, logs and results go here")
    sample_interval: float = Field(0.2, gt=0, description="seconds between memory samples of the server")
