"""OpenVINO (an optional engine: ``pip install openvino``) runs the exported model as ONNX Runtime does.

On the real export of the tiny training run: the same metadata read from the file, the same logits
within float rounding in fp32 (so the same decisions), bf16 close and saying so in its version, and
concurrent callers each getting their own answers.  Skipped where openvino is not installed.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers import make_image

pytest.importorskip("openvino")

from detector.calibration import calibrated_probabilities  # noqa: E402
from detector.runtimes.onnx_runtime import OnnxDetector  # noqa: E402
from detector.runtimes.openvino_runtime import OpenVinoDetector  # noqa: E402


def _batch(detector: OnnxDetector, count: int = 6) -> np.ndarray:
    """Real preprocessed images (the test data set's kinds), as the web app feeds the model."""
    images = []
    for seed in range(count):
        image = make_image("ai" if seed % 2 else "real", seed, (160, 120))
        images.append(detector.preprocess(_jpeg(image)))
    return np.stack(images)


def _jpeg(image) -> bytes:  # noqa: ANN001
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_fp32_answers_as_onnx_runtime_does(exported_model: Path) -> None:
    reference = OnnxDetector(exported_model, threads=1)
    engine = OpenVinoDetector(exported_model, threads=1, precision="f32")
    assert engine.metadata == reference.metadata  # read from the same file, through OpenVINO
    batch = _batch(reference)
    expected, got = reference.logits(batch), engine.logits(batch)
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert [d.label for d in engine.classify(batch)] == [d.label for d in reference.classify(batch)]
    # compiled for one image, a batch runs image by image: each answer is its own image's, alone or in a batch
    np.testing.assert_allclose(engine.logits(batch[:1]), expected[:1], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(np.concatenate([engine.logits(image[None]) for image in batch]), got)


def test_bf16_stays_close_and_names_itself(exported_model: Path) -> None:
    reference = OnnxDetector(exported_model, threads=1)
    engine = OpenVinoDetector(exported_model, threads=1, precision="bf16")
    assert engine.version == reference.version + "-bf16"
    assert replace(engine.metadata, version=reference.version) == reference.metadata
    batch = _batch(reference)
    expected, got = reference.logits(batch), engine.logits(batch)
    temperature = reference.metadata.temperature
    moved = calibrated_probabilities(got, temperature) - calibrated_probabilities(expected, temperature)
    # bf16 keeps 8 bits of mantissa: the default model's P(ai) moved by 0.10 at most over its 1,563 test
    # images (docs/performance.md); this toy model's steep calibration magnifies small logit changes
    assert np.abs(moved).max() < 0.15
    margin, bf16_margin = expected[:, 0] - expected[:, 1], got[:, 0] - got[:, 1]
    clear = np.abs(margin) > 1.0  # where fp32 is clearly decided, bf16 decides the same way
    assert (np.sign(margin[clear]) == np.sign(bf16_margin[clear])).all()


def test_class_activation_map_matches_when_exported(exported_model: Path) -> None:
    reference = OnnxDetector(exported_model, threads=1)
    engine = OpenVinoDetector(exported_model, threads=1)
    assert engine.has_cam == reference.has_cam
    if not reference.has_cam:
        pytest.skip("this export has no class activation map output")
    batch = _batch(reference, 2)
    (logits, cam), (expected_logits, expected_cam) = engine.logits_and_cam(batch), reference.logits_and_cam(batch)
    np.testing.assert_allclose(logits, expected_logits, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(cam, expected_cam, rtol=1e-4, atol=1e-4)


def test_concurrent_callers_get_their_own_answers(exported_model: Path) -> None:
    reference = OnnxDetector(exported_model, threads=1)
    engine = OpenVinoDetector(exported_model, threads=1, streams=2)
    batches = [_batch(reference, 3)[i : i + 1] for i in range(3)]
    expected = [reference.logits(batch) for batch in batches]
    results: dict[tuple[int, int], np.ndarray] = {}

    def work(worker: int) -> None:
        for round_ in range(10):
            index = (worker + round_) % len(batches)
            results[(worker, round_)] = engine.logits(batches[index])

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for (worker, round_), got in results.items():
        np.testing.assert_allclose(got, expected[(worker + round_) % len(batches)], rtol=1e-4, atol=1e-4)


def test_a_file_without_the_metadata_is_refused(tmp_path: Path, exported_model: Path) -> None:
    import onnx

    model = onnx.load(str(exported_model))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    with pytest.raises(ValueError, match="make export"):
        OpenVinoDetector(bare)
    with pytest.raises(ValueError, match="precision"):
        OpenVinoDetector(exported_model, precision="fp8")  # type: ignore[arg-type]


def test_web_app_engine_option_answers_as_onnx_runtime(exported_model: Path) -> None:
    """``--engine openvino`` in the web app: the same answers as ONNX Runtime, heatmaps where exported."""
    import asyncio

    from serving.backends import OnnxBackend
    from serving.config import ServeSettings

    files = [_jpeg(make_image("ai" if seed % 2 else "real", seed, (200, 150))) for seed in range(4)]
    answers = {}
    for engine in ("onnxruntime", "openvino"):
        backend = OnnxBackend(ServeSettings(model=exported_model, engine=engine))
        predictions = asyncio.run(backend.predict(files, explain="explain" in backend.features))
        answers[engine] = [(p.decision.label, p.decision.p_ai, p.heatmap is not None) for p in predictions]
        backend.release_memory()  # ONNX Runtime shrinks its arena; OpenVINO only hands back free heap
        assert backend.version == OnnxDetector(exported_model).version
    for (label, p_ai, heatmap), (expected_label, expected_p_ai, expected_heatmap) in zip(
        answers["openvino"], answers["onnxruntime"], strict=True
    ):
        assert (label, heatmap) == (expected_label, expected_heatmap)
        assert abs(p_ai - expected_p_ai) < 1e-4
