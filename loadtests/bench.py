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

``--rounds N`` measures the servers N times in turn (the order reversed every other round), and adds
a summary: each server's median, and the provenance evidence's cost as evidence-on throughput over
evidence-off throughput of the same round (by CPU time per image, and by images/s), round by round.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import statistics
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
    #: which of the ``--rounds`` measured it (1 when there is one)
    round: int = 1


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
    """One line per measurement; with several rounds, a first column says which (and CPU ms get a decimal)."""
    rounds = max((row.round for row in rows), default=1) > 1
    lines = [
        ("| round " if rounds else "")
        + "| server | images/s | x baseline | p50 ms | p95 ms | p99 ms | failures | peak RSS MB | cold start s "
        "| CPU ms/image |",
        ("| ---: " if rounds else "") + "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        # each row against the baseline of its own round
        baseline = next((r for r in rows if r.server == "baseline" and r.round == row.round), None)
        ratio = (
            f"{row.images_per_second / baseline.images_per_second:.2f}"
            if baseline and baseline.images_per_second
            else "-"
        )
        cpu = f"{row.cpu_ms_per_image:.1f}" if rounds else f"{row.cpu_ms_per_image:.0f}"
        lines.append(
            (f"| {row.round} " if rounds else "")
            + f"| {row.server} | {row.images_per_second:.1f} | {ratio} | {row.p50_ms:.0f} | {row.p95_ms:.0f} "
            f"| {row.p99_ms:.0f} | {row.failures}/{row.requests} | {row.peak_rss_mb:.0f} | {row.cold_start_s:.1f} "
            f"| {cpu} |"
        )
    return "\n".join(lines)


#: (evidence on, evidence off): the servers that differ only by the provenance evidence
EVIDENCE_PAIRS = (("webapp-provenance", "webapp"), ("webapp-provenance-openvino", "webapp-openvino"))


def format_summary(rows: list[Row]) -> str:
    """Over the rounds: each server's medians, and evidence-on throughput as a share of evidence-off, per round.

    Throughput by CPU time is (CPU ms per image off) / (CPU ms per image on): what the same cores answer
    with the evidence on, the figure that other load on the machine disturbs least; by images/s, the
    wall-clock one. Each round's pair was measured back to back.
    """
    servers = list(dict.fromkeys(row.server for row in rows))
    lines = [
        "| server | rounds | median images/s | median CPU ms/image | CPU ms/image, round by round |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for server in servers:
        mine = [row for row in rows if row.server == server]
        lines.append(
            f"| {server} | {len(mine)} | {statistics.median(r.images_per_second for r in mine):.1f} "
            f"| {statistics.median(r.cpu_ms_per_image for r in mine):.1f} "
            f"| {', '.join(f'{r.cpu_ms_per_image:.1f}' for r in mine)} |"
        )
    for on, off in EVIDENCE_PAIRS:
        pairs = [
            (row_on, row_off)
            for row_on in rows
            if row_on.server == on
            for row_off in rows
            if row_off.server == off and row_off.round == row_on.round
        ]
        if not pairs:
            continue
        by_cpu = [off_row.cpu_ms_per_image / on_row.cpu_ms_per_image for on_row, off_row in pairs]
        by_wall = [on_row.images_per_second / off_row.images_per_second for on_row, off_row in pairs]
        lines += [
            "",
            f"{on} / {off}, evidence-on throughput as a share of evidence-off: "
            f"by CPU time per image {_shares(by_cpu)}; by images/s {_shares(by_wall)}",
        ]
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
    for index in range(settings.rounds):
        # every other round in reverse order, so that a trend in the machine's other load weighs on all alike
        order = wanted if index % 2 == 0 else wanted[::-1]
        where = results if settings.rounds == 1 else results / f"round-{index + 1}"
        if settings.rounds > 1:
            print(f"[bench] round {index + 1} of {settings.rounds}: {', '.join(order)}", flush=True)
        measured = _measure_all(order, settings, where, checkpoint, onnx_model, int8, store, openvino, failed)
        for row in measured:
            row.round = index + 1
        rows += measured

    header = (
        f"{describe()}; {settings.users} Locust users for {settings.duration} per server, one image per request, "
        f"{len(list_images(settings.images))} photos from {settings.images}; model {checkpoint.name}"
    )
    table = format_table(rows)
    if settings.rounds > 1:
        table += "\n\n" + format_summary(rows)
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


def _shares(ratios: list[float]) -> str:
    return f"{100 * statistics.median(ratios):.1f} % (median; rounds: {', '.join(f'{100 * r:.1f}' for r in ratios)})"


def _measure_all(
    wanted: list[str],
    settings: BenchSettings,
    results: Path,
    checkpoint: Path,
    onnx_model: Path,
    int8: Path | None,
    store: Path | None,
    openvino: bool,
    failed: list[str],
) -> list[Row]:
    """Each server of ``wanted`` in turn, in that order; a server that fails is added to ``failed``."""
    rows: list[Row] = []
    torchserve_wanted = {"torchserve", "torchserve-grpc"} & set(wanted)
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
    return rows


if __name__ == "__main__":
    sys.exit(main())
