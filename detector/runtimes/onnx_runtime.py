"""The exported detector run by ONNX Runtime: torch-free inference for the web app, handler and scanners.

Everything it needs to turn image bytes into answers is inside the ``.onnx`` file: the weights and,
as metadata properties, the preprocessing parameters, class order, temperature, threshold and
version written by ``export.onnx``.  The GPU execution provider is used when ``onnxruntime-gpu``
offers it, the CPU one otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from detector.metadata import CheckpointMetadata
from detector.runtimes.base import Detector

#: the metadata property holding the full CheckpointMetadata as JSON
METADATA_KEY = "detector_metadata"
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
#: the class activation map, a second output of models exported since heatmaps exist
CAM_NAME = "cam"


def available_providers() -> list[str]:
    """CUDA first when this onnxruntime build and machine have it, the CPU always."""
    preferred = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return [p for p in preferred if p in ort.get_available_providers()]


class OnnxDetector(Detector):
    """An ONNX Runtime session over the exported file; its metadata comes from the file itself."""

    def __init__(self, path: Path | str, *, threads: int | None = None, providers: Sequence[str] | None = None):
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = Path(path)
        self.session = ort.InferenceSession(
            str(self.path), sess_options=options, providers=list(providers or available_providers())
        )
        props = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in props:
            raise ValueError(f"{self.path} has no {METADATA_KEY!r} metadata: export it with `make export`")
        super().__init__(CheckpointMetadata.from_json(props[METADATA_KEY]))
        self.has_cam = CAM_NAME in {output.name for output in self.session.get_outputs()}

    def logits(self, batch: np.ndarray) -> np.ndarray:
        # asking for the logits alone, ONNX Runtime skips the map's nodes
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)})[0]

    def logits_and_cam(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.has_cam:
            raise NotImplementedError(f"{self.path} has no {CAM_NAME!r} output: re-export it with `make export`")
        inputs = {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}
        logits, cam = self.session.run([OUTPUT_NAME, CAM_NAME], inputs)
        return logits, cam
