"""The checkpoint format: one ``.pt`` file with the state dict and everything a consumer must know.

Layout (plain dicts, lists, strings and numbers around tensors, so ``torch.load(...,
weights_only=True)`` reads it and no pickled code is ever executed)::

    {
      "format": "real-vs-ai-detector/1",
      "state_dict": {...},            # model weights
      "metadata": {...},              # CheckpointMetadata.to_dict()
      "training_state": {...} | None  # optimizer, epoch, history: only in resumable checkpoints
    }

Every consumer (handler, export, web app) takes the preprocessing parameters, the class order,
the calibration temperature and the decision threshold from ``metadata``, never from constants
of its own.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from detector.metadata import CheckpointMetadata
from detector.model import build_model

FORMAT = "real-vs-ai-detector/1"

__all__ = [
    "FORMAT",
    "Checkpoint",
    "CheckpointMetadata",
    "load_checkpoint",
    "load_model",
    "model_from_checkpoint",
    "save_checkpoint",
]


@dataclass
class Checkpoint:
    state_dict: dict[str, torch.Tensor]
    metadata: CheckpointMetadata
    training_state: dict[str, Any] | None = None


def save_checkpoint(path: Path | str, checkpoint: Checkpoint) -> Path:
    """Write atomically (temporary file + rename), so a crash never leaves half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "state_dict": checkpoint.state_dict,
        "metadata": checkpoint.metadata.to_dict(),
        "training_state": checkpoint.training_state,
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_checkpoint(path: Path | str) -> Checkpoint:
    """Read a checkpoint safely (``weights_only=True``) and check its format."""
    try:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # weights_only refuses pickled objects other than tensors and plain data: such a file may run code
        raise ValueError(
            f"{path} was refused: it holds pickled objects other than tensors and plain data ({error!s:.200})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} checkpoint")
    return Checkpoint(
        state_dict=payload["state_dict"],
        metadata=CheckpointMetadata.from_dict(payload["metadata"]),
        training_state=payload.get("training_state"),
    )


def model_from_checkpoint(checkpoint: Checkpoint) -> nn.Module:
    """The model with the checkpoint's weights, in eval mode, on the CPU."""
    meta = checkpoint.metadata
    model, _ = build_model(meta.architecture, num_classes=len(meta.classes), dropout=meta.dropout)
    model.load_state_dict(checkpoint.state_dict)
    return model.eval()


def load_model(path: Path | str) -> tuple[nn.Module, CheckpointMetadata]:
    """Load a checkpoint file into a ready-to-run model and its metadata."""
    checkpoint = load_checkpoint(path)
    return model_from_checkpoint(checkpoint), checkpoint.metadata
