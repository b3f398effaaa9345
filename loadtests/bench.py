"""Every serving path side by side, in one run on one machine: ``python -m loadtests.bench`` (``make bench``).

Each server is started in turn, asked once for a prediction (the cold start: launch to first
answer), loaded by the same Locust scenario (same images, users and duration), then stopped:

* ``baseline`` -- the naive design (:mod:`loadtests.baseline`): eager PyTorch, one image per request;
* ``torchserve`` -- TorchServe with the committed config (dynamic batching), REST ``/predictions``;
* ``torchserve-grpc`` -- the same running TorchServe, loaded through its gRPC API;
* ``webapp`` -- ``python -m serving`` with in-process ONNX Runtime fp32;
* ``webapp-int8`` -- the same with the int8 model from ``export/quantize.py``, when there is one;
* ``webapp-openvino``, ``webapp-openvino-bf16`` -- the fp32 model run by OpenVINO in fp32 and in bf16
  (``--engine openvino``), when openvino is installed;
* ``webapp-provenance``, ``webapp-provenance-openvino`` -- ONNX Runtime (OpenVINO) fp32 with the
  provenance evidence on, as ``make serve`` runs it (the rows above turn it off, so that every server
  does the same work per image; each pairs with ``webapp`` / ``webapp-openvino``).

It prints a table (images/s and as a multiple of the baseline's, p50/p95/p99 latency, failures,
peak RSS of the server's process tree, cold start, and the server's CPU time per image, a figure
that other load on the machine disturbs far less than the wall-clock ones) and writes it, with
every run's Locust CSV and server log, under ``runs/bench/results/<time>/``.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from pydantic_settings import CliApp

from detector.preprocessing import list_images
from loadtests import artefacts, servers
from loadtests.config import USER_CLASSES, BenchSettings, ScenarioSettings
from loadtests.images import ImagePool
from loadtests.machine import describe
from loadtests.run import run_locust


@dataclass
class Row:
    """One server's figures under the shared scenario."""

    server: str
    images_per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    requests: int
    failures: int
    peak_rss_mb: float
    cold_start_s: float
    #: server CPU time (all its processes, user + system) per answered image during the load
    cpu_ms_per_image: float
    note: str = ""


def load(
    server: servers.RunningServer, scenario: ScenarioSettings, settings: BenchSettings, output: Path, cold: float
) -> Row:
    """One Locust run against a running server, as a table row."""
    spec = server.spec
    cpu_before = server.cpu_seconds()
    _, summary = run_locust(
        user_class=USER_CLASSES[spec.target],
        host=spec.host,
        users=settings.users,
        duration=settings.duration,
        output=output,
        scenario=scenario,
    )
    answered = summary.requests - summary.failures
    cpu_ms = 1000 * (server.cpu_seconds() - cpu_before) / answered if answered else 0.0
    return Row(
        server=spec.name,
        # one image per request; failed requests classified nothing
        images_per_second=summary.requests_per_second * (1 - summary.failure_share),
        p50_ms=summary.p50_ms,
        p95_ms=summary.p95_ms,
        p99_ms=summary.p99_ms,
        requests=summary.requests,
        failures=summary.failures,
        peak_rss_mb=server.peak_megabytes,
        cold_start_s=cold,
        cpu_ms_per_image=cpu_ms,
    )


def measure(
    spec: servers.ServerSpec, settings: BenchSettings, results: Path, views: list[servers.ServerSpec] | None = None
) -> list[Row]:
    """Start ``spec``, time its first answer, load it through each of ``views`` (its APIs) in turn, stop it."""
    views = views or [spec]
    print(f"[bench] {spec.name}: starting", flush=True)
    first = ImagePool.from_folder(settings.images, settings.image_count, settings.seed).images[0]
    scenario = settings.model_copy(update={"torchserve_key_file": spec.key_file or settings.torchserve_key_file})
    rows = []
    with servers.RunningServer(views[0], results / spec.name / "server.log", settings.sample_interval) as server:
        cold = server.wait_first_answer(first, settings.start_timeout)
        print(f"[bench] {spec.name}: first answer after {cold:.1f} s", flush=True)
        for index, view in enumerate(views):
            print(f"[bench] {view.name}: {settings.users} users for {settings.duration}", flush=True)
            server.spec = view
            row = load(server, scenario, settings, results / view.name, cold)
            if index:
                row.note = f"same process as {views[0].name}, loaded after it; peak RSS since launch"
            rows.append(row)
    return rows


def format_table(rows: list[Row]) -> str:
    baseline = next((row for row in rows if row.server == "baseline"), None)
    lines = [
        "| server | images/s | x baseline | p50 ms | p95 ms | p99 ms | failures | peak RSS MB | cold start s "
        "| CPU ms/image |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        ratio = (
            f"{row.images_per_second / baseline.images_per_second:.2f}"
            if baseline and baseline.images_per_second
            else "-"
        )
        lines.append(
            f"| {row.server} | {row.images_per_second:.1f} | {ratio} | {row.p50_ms:.0f} | {row.p95_ms:.0f} "
            f"| {row.p99_ms:.0f} | {row.failures}/{row.requests} | {row.peak_rss_mb:.0f} | {row.cold_start_s:.1f} "
            f"| {row.cpu_ms_per_image:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    settings = CliApp.run(BenchSettings, cli_args=argv)
    work = settings.work_dir
    results = work / "results" / time.strftime("%Y%m%d-%H%M%S")
    wanted = list(dict.fromkeys(settings.servers))
    print(f"[bench] building the models under {work}", flush=True)
    ImagePool.from_folder(settings.images, settings.image_count, settings.seed)
    checkpoint = artefacts.bench_checkpoint(work, settings.checkpoint)
    onnx_model = artefacts.bench_onnx(work, checkpoint, settings.images)
    skipped: list[str] = []
    int8 = None
    if "webapp-int8" in wanted:
        int8 = artefacts.bench_int8(work, onnx_model, settings.images, settings.int8)
        if int8 is None:
            skipped.append("webapp-int8: no int8 model (export/quantize.py is not in this checkout; or pass --int8)")
    torchserve_wanted = {"torchserve", "torchserve-grpc"} & set(wanted)
    store = None
    if torchserve_wanted and shutil.which("java") is None:
        skipped.append("torchserve: no java on PATH (TorchServe needs Java 17)")
    elif torchserve_wanted:
        store = artefacts.bench_archive(work, onnx_model, settings.torchserve_config).parent
        if "torchserve-grpc" in wanted:
            artefacts.grpc_stubs()

    openvino = importlib.util.find_spec("openvino") is not None
    if not openvino and {"webapp-openvino", "webapp-openvino-bf16", "webapp-provenance-openvino"} & set(wanted):
        skipped.append("webapp-openvino rows: openvino is not installed (pip install openvino)")
    rows: list[Row] = []
    failed: list[str] = []
    torchserve_done = False
    for name in wanted:
        try:
            if name == "baseline":
                rows += measure(servers.baseline(checkpoint, settings.threads), settings, results)
            elif name == "webapp":
                spec = servers.webapp("webapp", onnx_model, settings.threads, engine="onnxruntime")
                rows += measure(spec, settings, results)
            elif name == "webapp-int8" and int8 is not None:
                spec = servers.webapp("webapp-int8", int8, settings.threads, engine="onnxruntime")
                rows += measure(spec, settings, results)
            elif name in ("webapp-openvino", "webapp-openvino-bf16", "webapp-provenance-openvino") and not openvino:
                continue
            elif name in ("webapp-openvino", "webapp-openvino-bf16"):
                precision = "bf16" if name.endswith("bf16") else "f32"
                spec = servers.webapp(name, onnx_model, settings.threads, engine="openvino", precision=precision)
                rows += measure(spec, settings, results)
            elif name in ("webapp-provenance", "webapp-provenance-openvino"):
                engine = "openvino" if name.endswith("openvino") else "onnxruntime"
                spec = servers.webapp(name, onnx_model, settings.threads, provenance=True, engine=engine)
                rows += measure(spec, settings, results)
            elif name in torchserve_wanted and store is not None and not torchserve_done:
                # one TorchServe launch serves both its REST and its gRPC rows
                torchserve_done = True
                spec = servers.torchserve(store, results / "torchserve")
                views = [spec] if "torchserve" in wanted else []
                views += [servers.torchserve_grpc_view(spec)] if "torchserve-grpc" in wanted else []
                rows += measure(spec, settings, results, views)
        except RuntimeError as error:  # a server that did not start or answer: report it, measure the rest
            failed.append(f"{name}: {error}")
            print(f"[bench] {name} failed: {error}", file=sys.stderr, flush=True)

    header = (
        f"{describe()}; {settings.users} Locust users for {settings.duration} per server, one image per request, "
        f"{len(list_images(settings.images))} photos from {settings.images}; model {checkpoint.name}"
    )
    table = format_table(rows)
    print("\n" + header + "\n\n" + table)
    notes = [f"skipped {line}" for line in skipped] + [f"FAILED {line.splitlines()[0]}" for line in failed]
    for line in notes:
        print(line)
    results.mkdir(parents=True, exist_ok=True)
    (results / "results.md").write_text(header + "\n\n" + table + "\n" + "".join(f"\n{note}" for note in notes))
    (results / "results.json").write_text(
        json.dumps(
            {
                "machine": describe(),
                "settings": settings.model_dump(mode="json", exclude={"torchserve_token"}),
                "rows": [asdict(row) for row in rows],
                "skipped": skipped,
                "failed": failed,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nresults, Locust CSVs and server logs in {results}")
    return 0 if rows and not failed and not any(row.failures for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
