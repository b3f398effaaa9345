"""The exported ``.onnx`` run by OpenVINO's CPU plugin, in fp32 or bf16 (``pip install openvino``).

OpenVINO reads the same file as ONNX Runtime and keeps its metadata properties (its ONNX frontend
copies ``metadata_props`` into the model's ``rt_info["framework"]``), so the metadata costs no
second parse of the file (``onnx.load`` would add ~0.1 s, and ``onnx`` is not in the web image).

``precision``: ``"f32"`` is asked for explicitly, because on a CPU with AVX-512 bf16 or AMX OpenVINO
otherwise runs bf16 on its own; ``"bf16"`` runs the network in bfloat16 where the CPU has it, and
appends ``-bf16`` to the version, so answers say they came from the lower precision.
``streams``: how many forward passes may run at once (OpenVINO runs one per stream, each on
``threads`` threads); each calling thread gets its own infer request.

The model is compiled for one image (its batch axis fixed at 1), and a batch runs as that many forward
passes. A fixed shape lets the CPU plugin plan its kernels and memory once instead of at every call: fp32
on one thread it answers 126.6 images/s against 106.1 with the batch axis left dynamic, with identical
outputs (``loadtests/microbench.py``, docs/performance.md). Batches were no faster per image on a CPU
anyway (118.9 against 137.3 images/s at batch 8 and 1), and the intermediate buffers stay those of one image.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
import openvino as ov
import openvino.properties as props
import openvino.properties.hint as hints

from detector.metadata import CheckpointMetadata
from detector.runtimes.base import Detector
from detector.runtimes.onnx_runtime import CAM_NAME, INPUT_NAME, METADATA_KEY, OUTPUT_NAME

Precision = Literal["f32", "bf16"]
PRECISIONS: tuple[Precision, ...] = ("f32", "bf16")


class OpenVinoDetector(Detector):
    """An OpenVINO CPU model compiled from the exported file; its metadata comes from the file itself."""

    def __init__(
        self, path: Path | str, *, threads: int | None = None, precision: Precision = "f32", streams: int = 1
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        self.path = Path(path)
        self.precision = precision
        core = ov.Core()
        model = core.read_model(self.path)
        key = ["framework", METADATA_KEY]
        if not model.has_rt_info(key):
            raise ValueError(f"{self.path} has no {METADATA_KEY!r} metadata: export it with `make export`")
        metadata = CheckpointMetadata.from_json(model.get_rt_info(key).astype(str))
        if precision != "f32":
            metadata = replace(metadata, version=f"{metadata.version}-{precision}")
        super().__init__(metadata)
        self.has_cam = CAM_NAME in {name for output in model.outputs for name in output.get_names()}
        model.reshape({INPUT_NAME: [1, *model.input(INPUT_NAME).get_partial_shape()[1:]]})
        config: dict[str, object] = {
            hints.inference_precision: ov.Type.bf16 if precision == "bf16" else ov.Type.f32,
            hints.performance_mode: hints.PerformanceMode.LATENCY,
            props.num_streams: streams,
        }
        if threads is not None:
            config[props.inference_num_threads] = threads * streams
        self.compiled = core.compile_model(model, "CPU", config)
        self._local = threading.local()

    def _run(self, batch: np.ndarray, names: tuple[str, ...]) -> list[np.ndarray]:
        """The named outputs for a batch, one image per forward pass (the compiled shape), stacked."""
        request = getattr(self._local, "request", None)
        if request is None:  # an infer request serves one caller at a time: one per thread
            request = self._local.request = self.compiled.create_infer_request()
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        answers: list[list[np.ndarray]] = [[] for _ in names]
        for image in range(len(batch)):
            outputs = request.infer({INPUT_NAME: batch[image : image + 1]})
            for answer, name in zip(answers, names, strict=True):
                answer.append(np.array(outputs[name], copy=True))  # the request reuses its output buffers
        return [np.concatenate(answer) for answer in answers]

    def logits(self, batch: np.ndarray) -> np.ndarray:
        # the map, when exported, costs one dot product a position
        return self._run(batch, (OUTPUT_NAME,))[0]

    def logits_and_cam(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.has_cam:
            raise NotImplementedError(f"{self.path} has no {CAM_NAME!r} output: re-export it with `make export`")
        logits, cam = self._run(batch, (OUTPUT_NAME, CAM_NAME))
        return logits, cam

    def release_memory(self) -> bool:
        """Hand the intermediate buffers back (the next forward pass allocates them again).

        After a burst of large uploads they hold memory that malloc_trim alone does not return. OpenVINO
        refuses while a forward pass runs (False then: the next quiet moment will do).
        """
        try:
            self.compiled.release_memory()
        except RuntimeError:
            return False
        return True
